//! Who may sign in where (contract §8's entitlement): a session belongs to its shop's issuer only, and
//! an uninstalled shop or a deleted customer signs no one in, however the request comes and whatever
//! was issued before.

use openidconnect::{
    OAuth2TokenResponse,
    core::{CoreAuthPrompt, CoreErrorResponseType},
};

use super::{
    fixtures::*,
    host::{Host, error_of, status_of},
};
use crate::{helpers::*, web::*};

crate::on_both_databases!(
    a_session_at_one_shop_signs_no_one_in_at_another,
    an_uninstalled_shop_signs_no_one_in_and_its_tokens_stop_working,
    a_deleted_customer_is_signed_in_no_more,
    staff_ending_the_sessions_stops_the_hosts_tokens_and_codes,
);

async fn a_session_at_one_shop_signs_no_one_in_at_another(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    install_with_portal(&app, "shop_2").await;
    let (first, second) = (Host::discover(&app, "shop_1").await, Host::discover(&app, "shop_2").await);
    assert_ne!(first.issuer, second.issuer);

    // shop_1's session means nothing at shop_2's issuer: its login page, not a code.
    let request = second.authorization(None);
    login_handle(&web.get(request.url.as_str()).await, "shop_2");
    let quietly = second.authorization(Some(CoreAuthPrompt::None));
    assert_eq!(
        Callback::of(&web.get(quietly.url.as_str()).await).error_for(&second, &quietly),
        "login_required"
    );

    // A code of shop_1 (which says so in `iss`) is worth nothing at shop_2's token endpoint.
    let (code, request) = a_code(&first, &mut web, None).await;
    let elsewhere = second.redeem(&code, Some(request.verifier())).await.unwrap_err();
    assert_eq!(error_of(&elsewhere), Some(&CoreErrorResponseType::InvalidGrant), "{elsewhere:?}");
}

async fn an_uninstalled_shop_signs_no_one_in_and_its_tokens_stop_working(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (tokens, _, _) = signed_in(&host, &mut web).await;
    let (unused_code, unused) = a_code(&host, &mut web, None).await;

    app.deliver(&uninstalled("shop_1", SOMEONE, 60)).await;
    let refused = host.userinfo(tokens.access_token(), None).await.unwrap_err();
    assert_eq!(status_of(&refused), Some(401), "{refused:?}");
    let late = host.redeem(&unused_code, Some(unused.verifier())).await.unwrap_err();
    assert_eq!(error_of(&late), Some(&CoreErrorResponseType::InvalidGrant), "{late:?}");

    let page = web.get(host.authorization(None).url.as_str()).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("not available") && page.header("location").is_none(), "{}", page.body);
    let quietly = host.authorization(Some(CoreAuthPrompt::None));
    assert_eq!(
        Callback::of(&web.get(quietly.url.as_str()).await).error_for(&host, &quietly),
        "login_required"
    );
}

async fn a_deleted_customer_is_signed_in_no_more(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (tokens, _, _) = signed_in(&host, &mut web).await;

    app.deliver(&customer_deleted("shop_1", "cus_1", 2)).await;
    let refused = host.userinfo(tokens.access_token(), None).await.unwrap_err();
    assert_eq!(status_of(&refused), Some(401), "{refused:?}");

    let quietly = host.authorization(Some(CoreAuthPrompt::None));
    assert_eq!(
        Callback::of(&web.get(quietly.url.as_str()).await).error_for(&host, &quietly),
        "login_required"
    );
    // The account and its sessions were erased with the customer, so the browser is a stranger now,
    // as on our own pages: the login page, where the old password opens nothing.
    let request = host.authorization(None);
    let handle = login_handle(&web.get(request.url.as_str()).await, "shop_1");
    let fields = [("email", EMAIL), ("password", PASSWORD), ("continue", handle.as_str())];
    let login = web.submit(&format!("/p/shop_1/login?continue={handle}"), &fields).await;
    assert_eq!((login.status, login.header("location")), (422, None), "{}", login.body);
}

async fn staff_ending_the_sessions_stops_the_hosts_tokens_and_codes(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    let (tokens, _, _) = signed_in(&host, &mut web).await;
    let (unused_code, unused) = a_code(&host, &mut web, None).await;
    assert!(host.userinfo(tokens.access_token(), None).await.is_ok());

    let profile = customer("cus_1", Some(EMAIL), None, 1);
    let ended = app.access(&access_submitted("shop_1", &profile, "int_end", Some("end_sessions"))).await;
    assert_eq!(ended["message"]["code"], "sessions_ended", "{ended}");

    let refused = host.userinfo(tokens.access_token(), None).await.unwrap_err();
    assert_eq!(status_of(&refused), Some(401), "{refused:?}");
    let late = host.redeem(&unused_code, Some(unused.verifier())).await.unwrap_err();
    assert_eq!(error_of(&late), Some(&CoreErrorResponseType::InvalidGrant), "{late:?}");
    // The browser's session ended too: the next sign-in asks for the password again.
    login_handle(&web.get(host.authorization(None).url.as_str()).await, "shop_1");
}
