//! The authorization endpoint's decision (OIDC Core §3.1.2): with a fresh enough session of an
//! entitled customer, a code at once; without one, the login page, holding the request server-side
//! until the customer has logged in; with `prompt=none`, `login_required` instead of any page.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    Identity, IdentityError,
    grants::{self, CodeFor},
    request::{Checked, Refusal, ReplyTo, reply_url},
};
use crate::{clock::from_millis, domain::RawToken, entities::shop};

/// The customer's live session at the shop, as far as the provider cares.
#[derive(Debug, Clone)]
pub struct Session {
    pub account_id: String,
    /// When the customer logged in (`auth_time`).
    pub started_at: DateTime<Utc>,
}

/// What the browser is shown.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Sent on to the client's redirect URI (a code, or an error the client handles).
    Redirect(String),
    /// The login page, which continues the request with this handle once the customer logged in.
    Login(String),
    /// The "portal not available" page: the shop or the customer may not sign in.
    Unavailable,
    /// The waiting request is gone (expired, answered, or never existed).
    Expired,
}

impl Identity {
    /// Answers a checked authorization request.
    pub async fn authorize(
        &self,
        shop: &shop::Model,
        request: Checked,
        session: Option<Session>,
    ) -> Result<Answer, IdentityError> {
        let now = self.clock.now();
        let cannot_sign_in = |request: &Checked| {
            if request.prompt.none {
                Answer::Redirect(
                    self.refusal_url(shop, &request.refuse("login_required", "the customer cannot sign in")),
                )
            } else {
                Answer::Unavailable
            }
        };
        if !shop.serves_portal() {
            return Ok(cannot_sign_in(&request));
        }
        let too_old =
            |s: &Session| request.max_age.is_some_and(|max| now - s.started_at > TimeDelta::seconds(max));
        let fresh_login = request.prompt.login || session.as_ref().is_some_and(too_old);
        match session {
            Some(session) if !fresh_login => {
                if self.entitled(shop, &session.account_id).await?.is_none() {
                    return Ok(cannot_sign_in(&request));
                }
                let code = self.issue_code(shop, &request, &session, None).await?;
                Ok(Answer::Redirect(self.code_url(shop, &request.reply_to, &code)))
            }
            _ if request.prompt.none => Ok(Answer::Redirect(
                self.refusal_url(shop, &request.refuse("login_required", "the customer is not logged in")),
            )),
            _ => {
                let shop_id = shop.shop_id();
                let handle = self
                    .db
                    .write(move |txn| {
                        Box::pin(async move {
                            grants::park_request(txn, &shop_id, &request, fresh_login, now).await
                        })
                    })
                    .await?;
                Ok(Answer::Login(handle.as_str().to_owned()))
            }
        }
    }

    /// Continues a waiting request after the customer logged in (or anything else that led back
    /// here).
    pub async fn resume(
        &self,
        shop: &shop::Model,
        handle: &str,
        session: Option<Session>,
    ) -> Result<Answer, IdentityError> {
        let now = self.clock.now();
        let Some(parked) = grants::parked_request(self.db.conn(), &shop.shop_id(), handle, now).await? else {
            return Ok(Answer::Expired);
        };
        // The host may have changed its portal since: the redirect URI must still be registered.
        let registered = shop.host_portal().is_some_and(|p| p.allows_redirect(&parked.redirect_uri));
        if !shop.serves_portal() || !registered {
            return Ok(Answer::Unavailable);
        }
        let Some(session) = session else { return Ok(Answer::Login(handle.to_owned())) };
        if parked.fresh_login && session.started_at < from_millis(parked.created_at) {
            return Ok(Answer::Login(handle.to_owned()));
        }
        if self.entitled(shop, &session.account_id).await?.is_none() {
            return Ok(Answer::Unavailable);
        }
        let request = Checked {
            reply_to: ReplyTo { redirect_uri: parked.redirect_uri.clone(), state: parked.state.clone() },
            client_id: parked.client_id.clone(),
            scope: parked.scope.clone(),
            nonce: parked.nonce.clone(),
            code_challenge: parked.code_challenge.clone(),
            prompt: Default::default(),
            max_age: None,
        };
        let code = self.issue_code(shop, &request, &session, Some(parked.id_hash)).await?;
        Ok(Answer::Redirect(self.code_url(shop, &request.reply_to, &code)))
    }

    /// Issues a code for `request`, forgetting the waiting request `answered` in the same
    /// transaction.
    async fn issue_code(
        &self,
        shop: &shop::Model,
        request: &Checked,
        session: &Session,
        answered: Option<String>,
    ) -> Result<RawToken, IdentityError> {
        let now = self.clock.now();
        let (shop_id, request, session) = (shop.shop_id(), request.clone(), session.clone());
        let code = self
            .db
            .write(move |txn| {
                Box::pin(async move {
                    if let Some(id_hash) = answered {
                        grants::drop_request(txn, &id_hash).await?;
                    }
                    let code_for = CodeFor {
                        shop_id: &shop_id,
                        client_id: &request.client_id,
                        account_id: &session.account_id,
                        redirect_uri: &request.reply_to.redirect_uri,
                        code_challenge: &request.code_challenge,
                        scope: &request.scope,
                        nonce: request.nonce.as_deref(),
                        auth_time: session.started_at,
                    };
                    grants::issue_code(txn, code_for, now).await
                })
            })
            .await?;
        Ok(code)
    }

    fn code_url(&self, shop: &shop::Model, reply_to: &ReplyTo, code: &RawToken) -> String {
        reply_url(reply_to, &self.issuer(&shop.id), &[("code", code.as_str())])
    }

    /// Where a refusal sends the browser: the client's redirect URI with the error.
    pub fn refusal_url(&self, shop: &shop::Model, refusal: &Refusal) -> String {
        let answer = [("error", refusal.error), ("error_description", refusal.description.as_str())];
        reply_url(&refusal.reply_to, &self.issuer(&shop.id), &answer)
    }
}
