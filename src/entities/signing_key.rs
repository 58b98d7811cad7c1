//! An RSA key ID tokens are signed with (the service's own, shared by every instance).

use sea_orm::entity::prelude::*;

/// One row of `signing_keys`.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    /// The `kid` in ID tokens' headers and the JWKS.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// 1 for the first key, one more for each rotation.
    pub generation: i32,
    /// PKCS#8 PEM.
    pub private_key: String,
    pub created_at: i64,
    /// Signs from then on (published in the JWKS from `created_at`).
    pub signs_from: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
