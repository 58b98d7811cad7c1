//! The world these tests sign in to: shops whose host runs a portal, customers with a password, and
//! the browser walking from the host's authorization request to its callback.

use openidconnect::core::CoreAuthPrompt;
use url::Url;

use super::host::{Authorization, CALLBACK, Host, PORTAL_BASE, Tokens};
use crate::{helpers::*, web::*};

/// The example shop, with the host's portal registered for it.
pub fn shop_with_portal(shop_id: &str) -> Shop {
    Shop { portal: Some(host_messages::Portal::at(PORTAL_BASE, shop_id)), ..Shop::example(shop_id) }
}

/// Installs `shop_id` with the host's portal.
pub async fn install_with_portal(app: &TestApp, shop_id: &str) {
    app.deliver(&host_messages::plugin_installed(&shop_with_portal(shop_id), 1, OWNER, at(0))).await;
}

/// Installs `shop_id` with a portal, invites Jana by email and sets her password with the link.
/// Returns her browser, logged in by the set-up.
pub async fn jana_at(app: &TestApp, shop_id: &str) -> Web {
    install_with_portal(app, shop_id).await;
    let link = invite(app, shop_id, "cus_1", EMAIL).await;
    set_up(app, &link).await
}

/// The reset link the "forgot password" email carries, once the outbox sent it.
pub async fn reset_link_emailed(app: &TestApp, shop_id: &str) -> String {
    let prefix = format!("/p/{shop_id}/reset/");
    let found = poll(200, std::time::Duration::from_millis(50), || {
        let link = emails(app).iter().find_map(|(_, text)| link_in(text, &prefix));
        async move { link }
    });
    found.await.expect("a reset link by email")
}

/// The portal account id of `customer_id` (what `sub` must be).
pub async fn account_id(app: &TestApp, customer_id: &str) -> String {
    let rows = app.rows(&format!("SELECT id FROM portal_accounts WHERE customer_id = '{customer_id}'")).await;
    rows[0].try_get("", "id").unwrap()
}

/// What the host's callback received.
#[derive(Debug)]
pub struct Callback {
    pub code: Option<String>,
    pub error: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
}

impl Callback {
    /// The redirect `page` makes to the host's registered callback.
    pub fn of(page: &Page) -> Self {
        assert_eq!(page.status, 303, "{}", page.body);
        let location = page.header("location").expect("a Location");
        let url = Url::parse(&location).unwrap();
        assert_eq!(
            format!("{}://{}{}", url.scheme(), url.host_str().unwrap(), url.path()),
            CALLBACK,
            "{location}"
        );
        let get = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        Self { code: get("code"), error: get("error"), state: get("state"), iss: get("iss") }
    }

    /// The code, after checking the answer belongs to `request` at `host`'s issuer (RFC 9207).
    pub fn code_for(&self, host: &Host, request: &Authorization) -> String {
        assert_eq!(self.error, None, "{self:?}");
        assert_eq!(self.state.as_deref(), Some(request.state.secret().as_str()));
        assert_eq!(self.iss.as_deref(), Some(host.issuer.as_str()));
        self.code.clone().expect("a code")
    }

    /// The error, after checking it came with the request's state and the issuer.
    pub fn error_for(&self, host: &Host, request: &Authorization) -> String {
        assert_eq!(self.code, None, "{self:?}");
        assert_eq!(self.state.as_deref(), Some(request.state.secret().as_str()));
        assert_eq!(self.iss.as_deref(), Some(host.issuer.as_str()));
        self.error.clone().expect("an error")
    }
}

/// Where our login page sent a sign-in that needs a login: the `continue` handle in the address.
pub fn login_handle(page: &Page, shop_id: &str) -> String {
    assert_eq!(page.status, 303, "{}", page.body);
    let location = page.location().unwrap();
    let prefix = format!("/p/{shop_id}/login?continue=");
    location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("not the login page of {shop_id}: {location}"))
        .to_owned()
}

/// The customer logs in on the page a sign-in sent them to, and the browser follows on to the host.
pub async fn log_in_and_continue(
    web: &mut Web,
    shop_id: &str,
    handle: &str,
    email: &str,
    password: &str,
) -> Page {
    let login = format!("/p/{shop_id}/login?continue={handle}");
    let page = web.get(&login).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("name=\"continue\" value=\"{handle}\"")),
        "the form carries the request"
    );
    let fields = [
        ("csrf", page.csrf()),
        ("continue", handle.to_owned()),
        ("email", email.into()),
        ("password", password.into()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = web.post(&format!("/p/{shop_id}/login"), &fields).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), Some(format!("/p/{shop_id}/oidc/continue?request={handle}")));
    web.get(&done.location().unwrap()).await
}

/// A whole sign-in by the browser that holds a session at `host`'s shop: the request, the code at
/// once, the exchange and the verified ID token.
pub async fn signed_in(host: &Host, web: &mut Web) -> (Tokens, super::host::IdTokenClaims, Authorization) {
    let request = host.authorization(None);
    let code = Callback::of(&web.get(request.url.as_str()).await).code_for(host, &request);
    let tokens = host.redeem(&code, Some(request.verifier())).await.expect("the code is redeemed");
    let claims = host.verify(&tokens, &request.nonce);
    (tokens, claims, request)
}

/// A code for a request of `host`, by the browser that holds a session; the request kept to redeem
/// it.
pub async fn a_code(host: &Host, web: &mut Web, prompt: Option<CoreAuthPrompt>) -> (String, Authorization) {
    let request = host.authorization(prompt);
    let code = Callback::of(&web.get(request.url.as_str()).await).code_for(host, &request);
    (code, request)
}
