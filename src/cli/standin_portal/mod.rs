//! A stand-in for the host's own Customer Portal, for `demo` and the end-to-end tests: a small
//! relying party on a listener of its own (http on 127.0.0.1), with the client credentials a host
//! uses (contract §8), so a customer who sets a password lands on a page that shows who the host now
//! knows they are. It keeps no session of its own: opening `/portal/{shop_id}` again signs in again,
//! at once, through the customer's session with us.
//!
//! `GET /portal/{shop_id}` starts a sign-in, `GET /portal/oidc/callback` finishes it,
//! `GET /portal/{shop_id}/signed-out` is where a sign-out returns. `relying_party` holds the
//! protocol, `pages` the HTML; the handlers here only join them.

mod flows;
mod id_token;
mod pages;
mod relying_party;

use std::sync::Arc;

use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    middleware::SetHeader,
    web::{Data, Path, Query},
};
use tokio::{sync::oneshot, task::JoinHandle};
use url::Url;

use self::relying_party::{RelyingParty, Reply};
use super::host_messages::Portal;
use crate::{
    clock::Clock,
    manifest::{self, Manifest},
};

/// What a host learns when it registers the plugin: the deployment's `base_url`, the OpenID client
/// (the plugin's key, and the signing secret as the client secret), and the manifest's `[identity]`.
#[derive(Clone)]
pub struct HostRegistration {
    pub public_url: Url,
    pub client_id: String,
    pub client_secret: String,
    pub identity: manifest::Identity,
}

impl HostRegistration {
    /// The registration of this binary's own manifest at `public_url`, with `client_secret` (the
    /// whole `whsec_…` secret).
    pub fn of_embedded_manifest(public_url: Url, client_secret: String) -> Result<Self, String> {
        let manifest = Manifest::parse(manifest::EMBEDDED).map_err(|e| format!("the manifest: {e}"))?;
        let identity = manifest.identity().cloned().ok_or("the manifest declares no [identity]")?;
        Ok(Self { public_url, client_id: manifest.plugin.key, client_secret, identity })
    }
}

/// The running stand-in. Dropping it stops it too.
pub struct StandIn {
    base_url: String,
    relying_party: Arc<RelyingParty>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl StandIn {
    /// Starts the stand-in on 127.0.0.1 on a free port.
    pub async fn start(registration: HostRegistration, clock: Clock) -> Result<Self, String> {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .map_err(|e| format!("the stand-in portal cannot listen: {e}"))?;
        let address = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or("the stand-in portal's listener has no address")?;
        let base_url = format!("http://{address}/portal");
        let relying_party = Arc::new(RelyingParty::new(registration, base_url.clone(), clock)?);
        let routes = Route::new()
            .at("/portal/oidc/callback", get(callback))
            .at("/portal/:shop", get(start))
            .at("/portal/:shop/signed-out", get(signed_out))
            .data(relying_party.clone())
            // The callback's URL carries a code and the sign-out link an ID token: neither may
            // travel on in a Referer or sit in a cache.
            .with(
                SetHeader::new()
                    .overriding("referrer-policy", "no-referrer")
                    .overriding("cache-control", "no-store"),
            );
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    routes,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(std::time::Duration::from_secs(1)),
                )
                .await
        });
        Ok(Self { base_url, relying_party, stop: Some(stop), server })
    }

    /// `http://127.0.0.1:{port}/portal`: every shop's portal is [`Portal::at`] it.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The `portal` object to register for `shop_id` (its start page, callback, signed-out page).
    pub fn portal(&self, shop_id: &str) -> Portal {
        self.relying_party.portal(shop_id)
    }

    /// Serves `shop_id`'s portal from now on, under its `name`.
    pub fn add_shop(&self, shop_id: &str, name: &str) {
        self.relying_party.add_shop(shop_id, name);
    }

    /// Stops serving and waits for the requests in flight (at most a second).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[handler]
async fn start(Path(shop_id): Path<String>, Data(rp): Data<&Arc<RelyingParty>>) -> Response {
    match rp.begin(&shop_id).await {
        Ok(authorize) => poem::web::Redirect::see_other(authorize).into_response(),
        Err(e) => failed(&e),
    }
}

#[handler]
async fn callback(Query(reply): Query<Reply>, Data(rp): Data<&Arc<RelyingParty>>) -> Response {
    match rp.complete(&reply).await {
        Ok(signed_in) => html(StatusCode::OK, pages::signed_in(&signed_in)),
        Err(e) => failed(&e),
    }
}

#[handler]
fn signed_out(Path(shop_id): Path<String>, Data(rp): Data<&Arc<RelyingParty>>) -> Response {
    let name = rp.shop_name(&shop_id).unwrap_or_else(|| shop_id.clone());
    html(StatusCode::OK, pages::signed_out(&name, &rp.portal(&shop_id).url))
}

fn failed(error: &relying_party::SignInError) -> Response {
    tracing::warn!(%error, "the stand-in portal could not sign the customer in");
    let (status, page) = pages::failed(error);
    html(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), page)
}

fn html(status: StatusCode, page: String) -> Response {
    Response::builder().status(status).content_type("text/html; charset=utf-8").body(page)
}
