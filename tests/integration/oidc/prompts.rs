//! What the host may ask about the login itself: `prompt=login` and `max_age` want a fresh one, and
//! a session that is too old is not enough even with `prompt=none`.

use chrono::TimeDelta;
use openidconnect::core::CoreAuthPrompt;

use super::{
    fixtures::*,
    host::{Authorization, Host},
};
use crate::{helpers::*, web::*};

crate::on_both_databases!(
    prompt_login_asks_for_the_password_even_with_a_session,
    max_age_is_met_by_a_recent_login_and_not_by_an_older_one,
);

/// Signs in through the login page with `request`, and returns the ID token's `auth_time`.
async fn auth_time_after_login(
    host: &Host,
    web: &mut Web,
    request: &Authorization,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let handle = login_handle(&web.get(request.url.as_str()).await, "shop_1");
    let back = log_in_and_continue(web, "shop_1", &handle, EMAIL, PASSWORD).await;
    let code = Callback::of(&back).code_for(host, request);
    let tokens = host.redeem(&code, Some(request.verifier())).await.expect("the code is redeemed");
    host.verify(&tokens, &request.nonce).auth_time()
}

async fn prompt_login_asks_for_the_password_even_with_a_session(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    app.advance(TimeDelta::minutes(5));

    let request = host.authorization(Some(CoreAuthPrompt::Login));
    let asked = web.get(request.url.as_str()).await;
    let handle = login_handle(&asked, "shop_1");
    // Coming back to the request without logging in again does not complete it.
    let resumed = web.get(&format!("/p/shop_1/oidc/continue?request={handle}")).await;
    assert_eq!(login_handle(&resumed, "shop_1"), handle, "still waiting for the login");

    let auth_time = auth_time_after_login(&host, &mut web, &request).await;
    assert_eq!(auth_time, Some(app.clock.now()), "auth_time is the new login, not the set-up's");

    // prompt=none and prompt=login together is not a request anyone can answer.
    let both = request.with_param("prompt", Some("none login"));
    let error = Callback::of(&web.get(&both).await).error_for(&host, &request);
    assert_eq!(error, "invalid_request");
}

async fn max_age_is_met_by_a_recent_login_and_not_by_an_older_one(app: TestApp) {
    let mut web = jana_at(&app, "shop_1").await;
    let host = Host::discover(&app, "shop_1").await;
    app.advance(TimeDelta::minutes(10));

    // Logged in ten minutes ago: an hour is fine, the code comes at once.
    let request = host.authorization(None);
    let hour = request.with_param("max_age", Some("3600"));
    Callback::of(&web.get(&hour).await).code_for(&host, &request);

    // A minute is not: prompt=none cannot ask, so the host hears login_required...
    let request = host.authorization(Some(CoreAuthPrompt::None));
    let minute = request.with_param("max_age", Some("60"));
    let error = Callback::of(&web.get(&minute).await).error_for(&host, &request);
    assert_eq!(error, "login_required");

    // ...and without prompt=none the customer is asked for the password, then signed in freshly.
    let request = host.authorization(None);
    let minute = request.with_param("max_age", Some("60"));
    let handle = login_handle(&web.get(&minute).await, "shop_1");
    let back = log_in_and_continue(&mut web, "shop_1", &handle, EMAIL, PASSWORD).await;
    let code = Callback::of(&back).code_for(&host, &request);
    let tokens = host.redeem(&code, Some(request.verifier())).await.expect("the code is redeemed");
    assert_eq!(host.verify(&tokens, &request.nonce).auth_time(), Some(app.clock.now()));
}
