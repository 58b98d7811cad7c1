//! The plugin as each shop's OpenID Provider (contract §8; OpenID Connect Core 1.0, RFC 6749,
//! RFC 7636): the host's portal is the one client, every shop its own issuer.
//!
//! - [`request`]: an authorization request read and checked; which errors may go back to the
//!   redirect URI and which must not;
//! - [`grants`]: authorization requests waiting for a login, codes and access tokens (hashes only),
//!   the single-use rule;
//! - [`tokens`]: the token exchange, the ID token and its claims, userinfo;
//! - [`client`]: the host authenticating as the client;
//! - [`keys`]: the RS256 signing keys.
//!
//! Who is logged in is `accounts`' (sessions); the shop's state is `shops`'. This module decides what
//! the protocol allows; `oidc` (the edge) speaks HTTP.

pub mod authorize;
pub mod client;
pub mod grants;
pub mod keys;
pub mod logout;
pub mod request;
pub mod tokens;

use chrono::TimeDelta;
use url::Url;

use crate::{clock::Clock, db::Database, entities::shop};
pub use client::Client;
pub use keys::KeyRing;

/// An authorization code lives this long at most (§8: 60 s).
pub const CODE_LIFETIME: TimeDelta = TimeDelta::seconds(60);
/// An access token is good at the userinfo endpoint this long.
pub const ACCESS_TOKEN_LIFETIME: TimeDelta = TimeDelta::minutes(5);
/// An ID token is valid this long.
pub const ID_TOKEN_LIFETIME: TimeDelta = TimeDelta::minutes(10);
/// How long an authorization request waits for the customer to log in (or set a password).
pub const REQUEST_LIFETIME: TimeDelta = TimeDelta::minutes(30);

/// What went wrong inside the provider (not the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("signing keys: {0}")]
    Keys(String),
}

/// The provider of every shop.
pub struct Identity {
    pub db: Database,
    pub clock: Clock,
    pub keys: KeyRing,
    pub client: Client,
    /// `PORTAL_PUBLIC_URL`: issuers are built on it.
    pub public_url: Url,
}

impl Identity {
    /// `{base_url}/p/{shop_id}`: the shop's issuer, exactly as in its tokens and discovery.
    pub fn issuer(&self, shop_id: &str) -> String {
        crate::links::issuer(&self.public_url, shop_id)
    }

    /// Whether the shop has a client at all: the host runs a portal for it.
    pub fn has_client(shop: &shop::Model) -> bool {
        shop.host_portal().is_some()
    }
}
