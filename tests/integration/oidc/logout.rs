//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0, contract §8): with a valid
//! `id_token_hint` the session ends at once and the browser goes back to the host; without one the
//! customer is asked first; a return address the shop did not register is never redirected to.

use openidconnect::{CsrfToken, LogoutRequest, PostLogoutRedirectUrl, TokenResponse, core::CoreAuthPrompt};

use super::{
    fixtures::*,
    host::{Host, PORTAL_BASE},
};
use crate::{helpers::*, web::*};

crate::on_both_databases!(
    a_logout_with_the_id_token_ends_the_session_and_returns_to_the_host,
    a_logout_without_a_valid_id_token_asks_the_customer_first,
);

fn signed_out_page() -> String {
    format!("{PORTAL_BASE}/shop_1/signed-out")
}

/// Whether `web`'s session still signs the customer in without asking.
async fn still_signed_in(host: &Host, web: &mut Web) -> bool {
    let request = host.authorization(Some(CoreAuthPrompt::None));
    let answer = Callback::of(&web.get(request.url.as_str()).await);
    match answer.code {
        Some(_) => true,
        None => {
            assert_eq!(answer.error_for(host, &request), "login_required");
            false
        }
    }
}

async fn a_logout_with_the_id_token_ends_the_session_and_returns_to_the_host(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (tokens, _, _) = signed_in(&host, &mut web).await;
    let id_token = tokens.id_token().unwrap();
    let mut copy = Web::new(&app);
    copy.cookies = web.cookies.clone();

    // A return address the shop did not register gets a page, and the session stays.
    let elsewhere = LogoutRequest::from(host.end_session_url())
        .set_id_token_hint(id_token)
        .set_post_logout_redirect_uri(
            PostLogoutRedirectUrl::new("https://attacker.example/bye".into()).unwrap(),
        )
        .http_get_url();
    let page = web.get(elsewhere.as_str()).await;
    assert_eq!((page.status, page.header("location")), (400, None), "{}", page.body);
    assert!(still_signed_in(&host, &mut web).await);

    let logout = LogoutRequest::from(host.end_session_url())
        .set_id_token_hint(id_token)
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(signed_out_page()).unwrap())
        .set_state(CsrfToken::new("after-logout".into()))
        .http_get_url();
    let out = web.get(logout.as_str()).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.header("location"), Some(format!("{}?state=after-logout", signed_out_page())));
    assert!(!web.cookies.contains_key("portal_session"), "the cookie is cleared");
    // The session ended on the server: a copy of the old cookie signs no one in either.
    assert!(!still_signed_in(&host, &mut copy).await);
    assert!(!still_signed_in(&host, &mut web).await);
}

async fn a_logout_without_a_valid_id_token_asks_the_customer_first(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (tokens, _, _) = signed_in(&host, &mut web).await;
    let forged = {
        // The real token with its signature taken from another: not ours any more.
        let real = tokens.id_token().unwrap().to_string();
        let (signed, _) = real.rsplit_once('.').unwrap();
        format!("{signed}.{}", "A".repeat(342))
    };

    let end_session = host.end_session_url().url().clone();
    for hint in [None, Some(forged.as_str())] {
        let mut url = end_session.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(hint) = hint {
                query.append_pair("id_token_hint", hint);
            }
            query.append_pair("post_logout_redirect_uri", &signed_out_page()).append_pair("state", "s1");
        }
        let asked = web.get(url.as_str()).await;
        assert_eq!((asked.status, asked.header("location")), (200, None), "{}", asked.body);
        assert!(asked.body.contains("Sign out?"), "{}", asked.body);
        assert!(still_signed_in(&host, &mut web).await, "nothing ends before the customer says so");
    }

    let asked =
        web.get(&format!("{end_session}?post_logout_redirect_uri={}&state=s1", signed_out_page())).await;
    let confirmed = web
        .post(
            "/p/shop_1/oidc/logout/confirm",
            &[("csrf", &asked.csrf()), ("post_logout_redirect_uri", &signed_out_page()), ("state", "s1")],
        )
        .await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    assert_eq!(confirmed.header("location"), Some(format!("{}?state=s1", signed_out_page())));
    assert!(!still_signed_in(&host, &mut web).await);
}
