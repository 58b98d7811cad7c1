//! The portal's cookies: their names and attributes, and reading them from a request. The session
//! cookie carries a session id (what it stands for is `accounts::sessions`); the pre-session cookie
//! binds the CSRF tokens of forms shown before login; the device cookie is `device`'s.

use std::time::Duration;

use poem::Response;

use crate::tokens::RawToken;

/// The cookies' names: `__Host-` prefixed (Secure, no Domain, Path=/) in production; plain for local
/// http, where browsers refuse `__Host-` cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieNames {
    /// Whether cookies are `Secure` (and prefixed).
    pub secure: bool,
}

impl CookieNames {
    /// The session cookie.
    pub fn session(self) -> &'static str {
        if self.secure { "__Host-portal_session" } else { "portal_session" }
    }

    /// The pre-session cookie that binds CSRF tokens before login.
    pub fn presession(self) -> &'static str {
        if self.secure { "__Host-portal_form" } else { "portal_form" }
    }

    /// The device cookie: this browser has logged in to these accounts before (see `device`).
    pub fn device(self) -> &'static str {
        if self.secure { "__Host-portal_device" } else { "portal_device" }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure in production.
    pub fn set(self, name: &str, value: &str, max_age: Duration) -> String {
        format!(
            "{name}={value}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{}",
            max_age.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// A `Set-Cookie` value that deletes the cookie.
    pub fn clear(self, name: &str) -> String {
        self.set(name, "", Duration::ZERO)
    }
}

/// The value of cookie `name` in the request, if present and well-formed.
///
/// The header is split as bytes, not as text: browsers send every cookie of the site in one header,
/// values exactly as they were set, and one non-ASCII value of some other application must not hide
/// ours (that would log the customer out and refuse their forms).
pub fn read_cookie<'a>(request: &'a poem::Request, name: &str) -> Option<&'a str> {
    read_raw_cookie(request, name).filter(|value| RawToken::parse(value).is_some())
}

/// The value of cookie `name` in the request, as sent; the caller checks its form.
pub fn read_raw_cookie<'a>(request: &'a poem::Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let equals = pair.iter().position(|&b| b == b'=')?;
            Some((&pair[..equals], &pair[equals + 1..]))
        })
        .find(|(key, _)| *key == name.as_bytes())
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
}

/// Adds `Set-Cookie` headers to a response.
pub fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for cookie in cookies {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(poem::http::header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    #[test]
    fn production_cookies_are_host_prefixed_secure_httponly_and_lax() {
        let names = CookieNames { secure: true };
        assert_eq!(names.session(), "__Host-portal_session");
        assert_eq!(names.device(), "__Host-portal_device");
        assert_eq!(CookieNames { secure: false }.device(), "portal_device");
        let cookie = names.set(names.session(), "abc", Duration::from_secs(60));
        assert_eq!(cookie, "__Host-portal_session=abc; Max-Age=60; Path=/; HttpOnly; SameSite=Lax; Secure");
        let local = CookieNames { secure: false };
        assert!(!local.set(local.session(), "abc", Duration::from_secs(60)).contains("Secure"));
        assert!(names.clear(names.session()).contains("Max-Age=0"));
    }

    #[test]
    fn only_well_formed_cookies_are_read() {
        let token = RawToken::generate();
        let request = poem::Request::builder()
            .header("cookie", format!("other=1; portal_session={}; x=y", token.as_str()))
            .finish();
        assert_eq!(read_cookie(&request, "portal_session"), Some(token.as_str()));
        let request = poem::Request::builder().header("cookie", "portal_session=../../etc").finish();
        assert_eq!(read_cookie(&request, "portal_session"), None);
    }

    #[test]
    fn another_cookie_with_non_ascii_bytes_does_not_hide_the_session() {
        let token = RawToken::generate();
        let header = format!("theme=žluťoučký; portal_session={}; lang=ü", token.as_str());
        let request = poem::Request::builder()
            .header("cookie", poem::http::HeaderValue::from_bytes(header.as_bytes()).unwrap())
            .finish();
        assert_eq!(read_cookie(&request, "portal_session"), Some(token.as_str()));
    }

    /// One `name=value` pair of a Cookie header, as browsers and attackers write them.
    fn cookie_pair() -> impl Strategy<Value = String> {
        prop_oneof![
            ("[a-z_-]{1,12}", "[^;]{0,50}").prop_map(|(k, v)| format!("{k}={v}")),
            ("[a-z_-]{1,12}", "[A-Za-z0-9_-]{43}").prop_map(|(k, v)| format!("{k}={v}")),
            "[^;]{0,30}",
            hostile::text(),
        ]
    }

    fn with_cookie_headers(headers: &[Vec<u8>]) -> poem::Request {
        let mut request = poem::Request::builder().finish();
        for value in headers {
            if let Ok(value) = poem::http::HeaderValue::from_bytes(value) {
                request.headers_mut().append(poem::http::header::COOKIE, value);
            }
        }
        request
    }

    proptest! {
        #[test]
        fn any_cookie_headers_give_a_well_formed_value_or_none(
            headers in prop::collection::vec(prop_oneof![
                prop::collection::vec(cookie_pair(), 0..8).prop_map(|pairs| pairs.join("; ").into_bytes()),
                hostile::bytes(),
            ], 0..4),
        ) {
            let request = with_cookie_headers(&headers);
            if let Some(value) = read_cookie(&request, "portal_session") {
                prop_assert!(RawToken::parse(value).is_some());
            }
        }

        #[test]
        fn the_session_cookie_is_found_among_any_others(
            before in prop::collection::vec(cookie_pair(), 0..6),
            after in prop::collection::vec(cookie_pair(), 0..6),
            separator in prop::sample::select(vec![";", "; ", " ;  "]),
        ) {
            // Another cookie of the same name earlier in the header would win; browsers send one.
            let others = |pairs: Vec<String>| -> Vec<String> {
                pairs.into_iter().filter(|p| !p.contains("portal_session")).collect()
            };
            let token = RawToken::generate();
            let mut pairs = others(before);
            pairs.push(format!("portal_session={}", token.as_str()));
            pairs.extend(others(after));
            let header = pairs.join(separator);
            let Ok(value) = poem::http::HeaderValue::from_str(&header) else { return Ok(()) };
            let request = poem::Request::builder().header(poem::http::header::COOKIE, value).finish();
            prop_assert_eq!(read_cookie(&request, "portal_session"), Some(token.as_str()));
        }
    }
}
