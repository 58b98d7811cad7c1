//! What the provider keeps between requests, only ever as hashes of what it handed out:
//!
//! - an authorization request waiting for the customer to log in (the handle travels in the login
//!   page's address; the request's parameters never leave the server);
//! - an authorization code: single use, [`CODE_LIFETIME`], bound to the shop's issuer, the client,
//!   the redirect URI and the PKCE challenge;
//! - the access token its redemption gave, good at the userinfo endpoint for
//!   [`ACCESS_TOKEN_LIFETIME`]. A code presented a second time revokes it (RFC 6749 §4.1.2).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set, sea_query::Expr};

use super::{ACCESS_TOKEN_LIFETIME, CODE_LIFETIME, REQUEST_LIFETIME, request::Checked};
use crate::{
    clock::to_millis,
    domain::{RawToken, ShopId},
    entities::{oidc_grant, oidc_request},
};

/// Keeps a checked request until the customer has logged in; returns the handle for the login
/// page's address.
pub async fn park_request<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    request: &Checked,
    fresh_login: bool,
    now: DateTime<Utc>,
) -> Result<RawToken, DbErr> {
    let handle = RawToken::generate();
    let row = oidc_request::ActiveModel {
        id_hash: Set(handle.hash()),
        shop_id: Set(shop_id.as_str().to_owned()),
        client_id: Set(request.client_id.clone()),
        redirect_uri: Set(request.reply_to.redirect_uri.clone()),
        scope: Set(request.scope.clone()),
        state: Set(request.reply_to.state.clone()),
        nonce: Set(request.nonce.clone()),
        code_challenge: Set(request.code_challenge.clone()),
        fresh_login: Set(fresh_login),
        created_at: Set(to_millis(now)),
        expires_at: Set(to_millis(now + REQUEST_LIFETIME)),
    };
    oidc_request::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(handle)
}

/// The waiting request with this handle in this shop, while it has not expired.
pub async fn parked_request<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    handle: &str,
    now: DateTime<Utc>,
) -> Result<Option<oidc_request::Model>, DbErr> {
    let Some(handle) = RawToken::parse(handle) else { return Ok(None) };
    let found = oidc_request::Entity::find_by_id(handle.hash()).one(conn).await?;
    Ok(found.filter(|r| r.shop_id == shop_id.as_str() && r.expires_at > to_millis(now)))
}

/// Forgets a waiting request (it was answered).
pub async fn drop_request<C: ConnectionTrait>(conn: &C, id_hash: &str) -> Result<(), DbErr> {
    oidc_request::Entity::delete_by_id(id_hash.to_owned()).exec(conn).await?;
    Ok(())
}

/// What a new code is for.
pub struct CodeFor<'a> {
    pub shop_id: &'a ShopId,
    pub client_id: &'a str,
    pub account_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: DateTime<Utc>,
}

/// Issues an authorization code.
pub async fn issue_code<C: ConnectionTrait>(
    conn: &C,
    code_for: CodeFor<'_>,
    now: DateTime<Utc>,
) -> Result<RawToken, DbErr> {
    let code = RawToken::generate();
    let row = oidc_grant::ActiveModel {
        id: Set(crate::random::id("grt")),
        code_hash: Set(code.hash()),
        shop_id: Set(code_for.shop_id.as_str().to_owned()),
        client_id: Set(code_for.client_id.to_owned()),
        account_id: Set(code_for.account_id.to_owned()),
        redirect_uri: Set(code_for.redirect_uri.to_owned()),
        code_challenge: Set(code_for.code_challenge.to_owned()),
        scope: Set(code_for.scope.to_owned()),
        nonce: Set(code_for.nonce.map(str::to_owned)),
        auth_time: Set(to_millis(code_for.auth_time)),
        code_expires_at: Set(to_millis(now + CODE_LIFETIME)),
        code_used_at: Set(None),
        access_token_hash: Set(None),
        access_expires_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(to_millis(now)),
    };
    oidc_grant::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(code)
}

/// The grant a presented code names, if any (used or not).
pub async fn grant_of_code<C: ConnectionTrait>(
    conn: &C,
    code: &str,
) -> Result<Option<oidc_grant::Model>, DbErr> {
    let Some(code) = RawToken::parse(code) else { return Ok(None) };
    oidc_grant::Entity::find().filter(oidc_grant::Column::CodeHash.eq(code.hash())).one(conn).await
}

/// What a token request presents with the code.
pub struct Presented<'a> {
    pub shop_id: &'a ShopId,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    /// BASE64URL(SHA-256(code_verifier)).
    pub challenge_of_verifier: &'a str,
}

/// How a redemption ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The code was good: the access token is stored (hash) against the grant.
    Granted,
    /// The code had been redeemed before: the grant is revoked now, its access token with it.
    Replayed,
    /// Expired, or bound to something else than what was presented: the code is used up.
    Refused,
}

/// Redeems `grant`'s code in one conditional update, binding `access_token` to it. Of any number of
/// simultaneous redemptions, one wins.
pub async fn redeem<C: ConnectionTrait>(
    conn: &C,
    grant: &oidc_grant::Model,
    presented: &Presented<'_>,
    access_token: &RawToken,
    now: DateTime<Utc>,
) -> Result<Redeemed, DbErr> {
    use oidc_grant::Column as G;
    let now_ms = to_millis(now);
    let won = oidc_grant::Entity::update_many()
        .col_expr(G::CodeUsedAt, Expr::value(now_ms))
        .col_expr(G::AccessTokenHash, Expr::value(access_token.hash()))
        .col_expr(G::AccessExpiresAt, Expr::value(to_millis(now + ACCESS_TOKEN_LIFETIME)))
        .filter(G::Id.eq(grant.id.as_str()))
        .filter(G::CodeUsedAt.is_null())
        .filter(G::RevokedAt.is_null())
        .filter(G::CodeExpiresAt.gt(now_ms))
        .filter(G::ShopId.eq(presented.shop_id.as_str()))
        .filter(G::ClientId.eq(presented.client_id))
        .filter(G::RedirectUri.eq(presented.redirect_uri))
        .filter(G::CodeChallenge.eq(presented.challenge_of_verifier))
        .exec(conn)
        .await?
        .rows_affected
        == 1;
    if won {
        return Ok(Redeemed::Granted);
    }
    // Lost: either the code was used before (then whatever it gave is revoked), or it is expired or
    // was presented with the wrong bindings (then it is used up, so a verifier cannot be guessed).
    let replayed = oidc_grant::Entity::update_many()
        .col_expr(G::RevokedAt, Expr::value(now_ms))
        .filter(G::Id.eq(grant.id.as_str()))
        .filter(G::CodeUsedAt.is_not_null())
        .filter(G::RevokedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected
        == 1;
    if replayed || grant.code_used_at.is_some() {
        return Ok(Redeemed::Replayed);
    }
    oidc_grant::Entity::update_many()
        .col_expr(G::CodeUsedAt, Expr::value(now_ms))
        .filter(G::Id.eq(grant.id.as_str()))
        .filter(G::CodeUsedAt.is_null())
        .exec(conn)
        .await?;
    Ok(Redeemed::Refused)
}

/// Revokes a grant (its code and its access token).
pub async fn revoke<C: ConnectionTrait>(conn: &C, grant_id: &str, now: DateTime<Utc>) -> Result<(), DbErr> {
    oidc_grant::Entity::update_many()
        .col_expr(oidc_grant::Column::RevokedAt, Expr::value(to_millis(now)))
        .col_expr(oidc_grant::Column::CodeUsedAt, Expr::value(to_millis(now)))
        .filter(oidc_grant::Column::Id.eq(grant_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Revokes every grant of an account (a staff member ended the customer's sessions): their unused
/// codes and their access tokens stop working at once.
pub async fn revoke_all_for_account<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = oidc_grant::Entity::update_many()
        .col_expr(oidc_grant::Column::RevokedAt, Expr::value(to_millis(now)))
        .filter(oidc_grant::Column::AccountId.eq(account_id))
        .filter(oidc_grant::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// The grant a presented access token stands for, while it is good, in this shop.
pub async fn grant_of_access_token<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<oidc_grant::Model>, DbErr> {
    let Some(token) = RawToken::parse(token) else { return Ok(None) };
    let found = oidc_grant::Entity::find()
        .filter(oidc_grant::Column::AccessTokenHash.eq(token.hash()))
        .one(conn)
        .await?;
    Ok(found.filter(|g| {
        g.shop_id == shop_id.as_str()
            && g.revoked_at.is_none()
            && g.access_expires_at.is_some_and(|at| at > to_millis(now))
    }))
}

/// Deletes waiting requests and grants nothing can use any more (housekeeping).
pub async fn purge_expired<C: ConnectionTrait>(conn: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let now_ms = to_millis(now);
    let requests = oidc_request::Entity::delete_many()
        .filter(oidc_request::Column::ExpiresAt.lte(now_ms))
        .exec(conn)
        .await?
        .rows_affected;
    // A grant is kept a day after its code was issued: long after its token expired, so a replayed
    // code is still recognised (and reported) as one.
    let day_ago = now_ms - 86_400_000;
    let grants = oidc_grant::Entity::delete_many()
        .filter(oidc_grant::Column::CreatedAt.lte(day_ago))
        .exec(conn)
        .await?
        .rows_affected;
    Ok(requests + grants)
}
