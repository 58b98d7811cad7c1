//! The links we send and show, all on our own public URL (no shortener).

use url::Url;

use crate::tokens::RawToken;

fn base(public_url: &Url) -> &str {
    public_url.as_str().trim_end_matches('/')
}

/// Where a customer sets their first password.
pub fn setup(public_url: &Url, token: &RawToken) -> String {
    format!("{}/setup/{}", base(public_url), token.as_str())
}

/// Where a customer chooses a new password after "forgot password".
pub fn reset(public_url: &Url, token: &RawToken) -> String {
    format!("{}/reset/{}", base(public_url), token.as_str())
}

/// The shop's portal login page.
pub fn login(public_url: &Url, shop_id: &str) -> String {
    format!("{}/p/{shop_id}/login", base(public_url))
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
            let setup = setup(&url, &token);
            assert!(setup.ends_with(&format!("/setup/{}", token.as_str())));
            assert!(!setup.replace("https://", "").contains("//"), "{setup}");
            assert!(login(&url, "shop_1").ends_with("/p/shop_1/login"));
        }
    }
}
