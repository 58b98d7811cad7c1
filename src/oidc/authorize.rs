//! `GET|POST {issuer}/oidc/authorize`, and `GET {issuer}/oidc/continue`, where the login page sends
//! the customer back once they have logged in.

use std::sync::Arc;

use poem::{
    Body, Request, Response, handler,
    web::{Data, Path, Query},
};
use serde::Deserialize;

use super::{
    errors::{OidcError, untrusted_text},
    params,
};
use crate::{
    clock::from_millis,
    entities::shop,
    identity::{
        Identity,
        authorize::{Answer, Session},
        request::{self, Rejected},
    },
    links,
    portal::{PortalContext, cookies, errors::PortalError, pages},
};

#[handler]
pub async fn authorize(
    request: &Request,
    body: Body,
    Path(shop_id): Path<String>,
    Data(identity): Data<&Arc<Identity>>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.find_shop(&shop_id).await?;
        let params = params::of_request(request, body).await.ok_or(PortalError::BadRequest)?;
        let checked = match request::check(&params, &identity.client, shop.host_portal().as_ref()) {
            Ok(checked) => checked,
            Err(Rejected::Untrusted(why)) => {
                return Err(
                    PortalError::SignInRefused { shop: Box::new(shop), reason: untrusted_text(why) }.into()
                );
            }
            Err(Rejected::Refused(refusal)) => {
                return Ok(pages::see_other(&identity.refusal_url(&shop, &refusal)));
            }
        };
        let session = session(request, portal, &shop).await?;
        let answer = identity.authorize(&shop, checked, session).await?;
        answered(portal, shop, answer)
    }
    .await;
    result.unwrap_or_else(|e: OidcError| e.respond(portal))
}

#[derive(Deserialize)]
pub(super) struct Resume {
    #[serde(default)]
    request: String,
}

#[handler]
pub async fn resume(
    request: &Request,
    Path(shop_id): Path<String>,
    Query(resume): Query<Resume>,
    Data(identity): Data<&Arc<Identity>>,
    Data(portal): Data<&PortalContext>,
) -> Response {
    let result = async {
        let shop = portal.find_shop(&shop_id).await?;
        let session = session(request, portal, &shop).await?;
        let answer = identity.resume(&shop, &resume.request, session).await?;
        answered(portal, shop, answer)
    }
    .await;
    result.unwrap_or_else(|e: OidcError| e.respond(portal))
}

/// The customer's live session at this shop, if the browser has one.
pub(super) async fn session(
    request: &Request,
    portal: &PortalContext,
    shop: &shop::Model,
) -> Result<Option<Session>, OidcError> {
    let Some(cookie) = cookies::read_cookie(request, portal.cookie_names().session()) else {
        return Ok(None);
    };
    let found = portal.accounts.find_session(cookie, &shop.shop_id()).await?;
    Ok(found.map(|s| Session { account_id: s.account_id, started_at: from_millis(s.created_at) }))
}

fn answered(portal: &PortalContext, shop: shop::Model, answer: Answer) -> Result<Response, OidcError> {
    match answer {
        Answer::Redirect(url) => Ok(pages::see_other(&url)),
        Answer::Login(handle) => {
            let login = links::portal_path(&portal.public_url, &shop.id, "login");
            Ok(pages::see_other(&format!("{login}?continue={handle}")))
        }
        Answer::Unavailable => Err(PortalError::Unavailable(Box::new(shop)).into()),
        Answer::Expired => Err(PortalError::SignInExpired(Box::new(shop)).into()),
    }
}
