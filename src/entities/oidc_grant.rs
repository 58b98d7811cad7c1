//! One authorization code and, once redeemed, the access token it gave.

use sea_orm::entity::prelude::*;

/// One row of `oidc_grants`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oidc_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// SHA-256 of the code, hex.
    pub code_hash: String,
    pub shop_id: String,
    pub client_id: String,
    pub account_id: String,
    /// The redirect URI the code was sent to; the token request must name the same.
    pub redirect_uri: String,
    /// The PKCE `S256` challenge the verifier must answer.
    pub code_challenge: String,
    /// Space-separated.
    pub scope: String,
    pub nonce: Option<String>,
    /// When the customer logged in (the session's start).
    pub auth_time: i64,
    pub code_expires_at: i64,
    pub code_used_at: Option<i64>,
    /// SHA-256 of the access token, hex, once the code was redeemed.
    pub access_token_hash: Option<String>,
    pub access_expires_at: Option<i64>,
    /// Set when the code was presented a second time: its access token then stops working.
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
