//! An authorization request waiting for the customer to log in.

use sea_orm::entity::prelude::*;

/// One row of `oidc_requests`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oidc_requests")]
pub struct Model {
    /// SHA-256 of the handle in the login page's address, hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    pub shop_id: String,
    pub client_id: String,
    /// A registered redirect URI, checked when the request was made.
    pub redirect_uri: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The PKCE `S256` challenge.
    pub code_challenge: String,
    /// Only a login after `created_at` completes it (`prompt=login`, or `max_age` exceeded).
    pub fresh_login: bool,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
