//! CSRF protection for every form. A form carries a token derived from the session id (or, before
//! login, from a pre-session cookie) with the service's own key, so a page on another site can
//! neither read nor forge it. POSTs from another site are refused before that, by `Sec-Fetch-Site`
//! and `Origin`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The token for forms bound to `binding` (a session or pre-session id).
pub fn token(key: &[u8], binding: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(b"csrf|");
    mac.update(binding.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether `submitted` is the token for `binding`, compared in constant time.
pub fn verify(key: &[u8], binding: &str, submitted: &str) -> bool {
    let expected = token(key, binding);
    expected.len() == submitted.len() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// Whether a POST comes from our own pages. Browsers that send `Sec-Fetch-Site` are judged by it
/// (`same-origin`, or `none` for a person's own action, pass). Otherwise an `Origin` must be the
/// public URL's. `Origin: null` is no evidence either way: browsers send it for same-origin forms
/// when the page's `Referrer-Policy` is `no-referrer`, as ours is; the CSRF token still decides.
pub fn same_site(request: &poem::Request, public_origin: &str) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
    }
    match header("origin") {
        None | Some("null") => true,
        Some(origin) => origin.eq_ignore_ascii_case(public_origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    #[test]
    fn tokens_are_bound_to_their_key_and_binding() {
        let key = [7u8; 64];
        let t = token(&key, "session-a");
        assert!(verify(&key, "session-a", &t));
        assert!(!verify(&key, "session-b", &t));
        assert!(!verify(&[8u8; 64], "session-a", &t));
        assert!(!verify(&key, "session-a", ""));
        assert!(!verify(&key, "session-a", &t[1..]));
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let origin = "https://portal.example.com";
        let request = |headers: &[(&str, &str)]| {
            let mut builder = poem::Request::builder();
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            builder.finish()
        };
        assert!(same_site(&request(&[]), origin));
        assert!(same_site(&request(&[("origin", origin), ("sec-fetch-site", "same-origin")]), origin));
        // What a browser sends for our own form under Referrer-Policy: no-referrer.
        assert!(same_site(&request(&[("origin", "null"), ("sec-fetch-site", "same-origin")]), origin));
        assert!(!same_site(&request(&[("sec-fetch-site", "cross-site")]), origin));
        assert!(!same_site(
            &request(&[("sec-fetch-site", "same-site"), ("origin", "https://other.example.com")]),
            origin
        ));
        assert!(!same_site(&request(&[("origin", "https://evil.example")]), origin));
    }

    /// A request with these headers; values a client cannot send (control bytes) are left out.
    fn request_with(headers: &[(&'static str, Vec<u8>)]) -> poem::Request {
        let mut request = poem::Request::builder().finish();
        for (name, value) in headers {
            if let Ok(value) = poem::http::HeaderValue::from_bytes(value) {
                request.headers_mut().append(*name, value);
            }
        }
        request
    }

    proptest! {
        #[test]
        fn only_the_exact_token_verifies(
            key in prop::collection::vec(any::<u8>(), 0..80),
            binding in hostile::text(),
            submitted in hostile::text(),
        ) {
            let expected = token(&key, &binding);
            prop_assert!(verify(&key, &binding, &expected));
            prop_assert_eq!(verify(&key, &binding, &submitted), submitted == expected);
        }

        #[test]
        fn any_site_and_origin_headers_are_judged_without_panicking(
            site in proptest::option::of(prop_oneof![
                prop::sample::select(vec!["same-origin", "none", "cross-site", "same-site", "SAME-ORIGIN"])
                    .prop_map(|s| s.as_bytes().to_vec()),
                hostile::bytes(),
            ]),
            origin in proptest::option::of(prop_oneof![
                Just(b"https://portal.example.com".to_vec()),
                Just(b"null".to_vec()),
                hostile::bytes(),
            ]),
        ) {
            let origin_ours = "https://portal.example.com";
            let mut headers = Vec::new();
            if let Some(site) = &site {
                headers.push(("sec-fetch-site", site.clone()));
            }
            if let Some(origin) = &origin {
                headers.push(("origin", origin.clone()));
            }
            let request = request_with(&headers);
            let allowed = same_site(&request, origin_ours);
            // Whatever else is sent, a browser that says the POST is cross-site is believed.
            if site.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(b"cross-site")) {
                prop_assert!(!allowed);
            }
            // And with no Sec-Fetch-Site, a foreign Origin is refused.
            if site.is_none() && request.headers().get("origin").is_some_and(|o| {
                o.to_str().is_ok_and(|o| o != "null" && !o.eq_ignore_ascii_case(origin_ours))
            }) {
                prop_assert!(!allowed);
            }
        }
    }
}
