//! The links we send and show, all on our own public URL (no shortener), all under the shop's
//! `/p/{shop_id}/`, so even a link that no longer works leads to a page that names the shop.

use url::Url;

use crate::domain::RawToken;

fn base(public_url: &Url) -> &str {
    public_url.as_str().trim_end_matches('/')
}

/// The shop's portal home.
pub fn home(public_url: &Url, shop_id: &str) -> String {
    format!("{}/p/{shop_id}", base(public_url))
}

/// Where a customer sets their first password.
pub fn setup(public_url: &Url, shop_id: &str, token: &RawToken) -> String {
    format!("{}/p/{shop_id}/setup/{}", base(public_url), token.as_str())
}

/// Where a customer chooses a new password after "forgot password".
pub fn reset(public_url: &Url, shop_id: &str, token: &RawToken) -> String {
    format!("{}/p/{shop_id}/reset/{}", base(public_url), token.as_str())
}

/// The shop's OpenID Connect issuer (contract §8): `{base_url}/p/{shop_id}`. Discovery and every
/// endpoint of the shop's provider hang below it.
pub fn issuer(public_url: &Url, shop_id: &str) -> String {
    format!("{}/p/{shop_id}", base(public_url))
}

/// An endpoint of the shop's provider (`{issuer}/oidc/{name}`): a path of its own, so it never
/// clashes with the portal's pages.
pub fn oidc_endpoint(public_url: &Url, shop_id: &str, name: &str) -> String {
    format!("{}/oidc/{name}", issuer(public_url, shop_id))
}

/// The shop's portal login page.
pub fn login(public_url: &Url, shop_id: &str) -> String {
    format!("{}/p/{shop_id}/login", base(public_url))
}

/// The shop's "forgot password" page.
pub fn forgot(public_url: &Url, shop_id: &str) -> String {
    format!("{}/p/{shop_id}/forgot", base(public_url))
}

/// The path of a page of the shop's portal (`/p/{shop_id}/{page}`, below the public URL's own path),
/// for links and form actions inside our pages: they work whatever host name the page was reached
/// by, and read cleanly in the HTML.
pub fn portal_path(public_url: &Url, shop_id: &str, page: &str) -> String {
    let prefix = public_url.path().trim_end_matches('/');
    if page.is_empty() { format!("{prefix}/p/{shop_id}") } else { format!("{prefix}/p/{shop_id}/{page}") }
}

/// The public URL's origin (`scheme://host[:port]`), as browsers send it in `Origin`.
pub fn origin(public_url: &Url) -> String {
    public_url.origin().ascii_serialization()
}

/// The path the SMS gateway posts its status reports to (contract §10), outside `/p/`.
pub const SMS_STATUS_PATH: &str = "/sms/status";

/// The `StatusCallback` of an SMS: where the gateway reports on it, naming our message, so that a
/// report that arrives before we recorded the gateway's id for the message still finds it.
pub fn sms_status(public_url: &Url, message_id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(message_id.as_bytes()).collect();
    format!("{}{SMS_STATUS_PATH}?message={id}", base(public_url))
}

/// The URL a request was sent to, as its sender wrote it: the public URL, then the path and raw
/// query the request arrived with (a proxy in front strips the public URL's own path, if it has
/// one). Signatures over the URL (the SMS gateway's) are checked against this.
pub fn as_called(public_url: &Url, path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{}{path}?{query}", base(public_url)),
        None => format!("{}{path}", base(public_url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_a_path_prefix_and_never_double_slashes() {
        let token = RawToken::generate();
        for public in
            ["https://portal.example.com", "https://portal.example.com/", "https://x.example/portal/"]
        {
            let url = Url::parse(public).unwrap();
            let setup = setup(&url, "shop_1", &token);
            assert!(setup.ends_with(&format!("/p/shop_1/setup/{}", token.as_str())));
            assert!(!setup.replace("https://", "").contains("//"), "{setup}");
            assert!(login(&url, "shop_1").ends_with("/p/shop_1/login"));
        }
        assert_eq!(origin(&Url::parse("https://x.example/portal/").unwrap()), "https://x.example");
        let prefixed = Url::parse("https://x.example/portal/").unwrap();
        assert_eq!(portal_path(&prefixed, "s", "login"), "/portal/p/s/login");
        assert_eq!(portal_path(&Url::parse("http://127.0.0.1:8080").unwrap(), "s", ""), "/p/s");
        assert_eq!(origin(&Url::parse("http://127.0.0.1:8080").unwrap()), "http://127.0.0.1:8080");
    }

    #[test]
    fn the_status_callback_is_the_url_its_reports_are_checked_against() {
        for public in ["https://portal.example.com", "https://x.example/portal/"] {
            let url = Url::parse(public).unwrap();
            let callback = sms_status(&url, "msg_0a1b");
            assert!(callback.ends_with("/sms/status?message=msg_0a1b"), "{callback}");
            // The gateway calls it; the request arrives with this path and query.
            assert_eq!(as_called(&url, SMS_STATUS_PATH, Some("message=msg_0a1b")), callback);
        }
        let url = Url::parse("https://portal.example.com").unwrap();
        assert_eq!(as_called(&url, "/sms/status", None), "https://portal.example.com/sms/status");
    }
}
