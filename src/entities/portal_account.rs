//! A customer's login to the portal of one shop.

use sea_orm::entity::prelude::*;

/// One row of `portal_accounts`.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "portal_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub shop_id: String,
    /// The customer who owns it.
    pub customer_id: String,
    /// The normalised email the customer logs in with; unique within the shop.
    pub username: String,
    /// argon2id PHC string; `None` until the customer sets a password.
    pub password_hash: Option<String>,
    /// When the password was last set.
    pub password_changed_at: Option<i64>,
    /// The address the customer proved they control by using a link emailed to it (normalised).
    pub verified_email: Option<String>,
    /// The last successful login.
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for Model {
    // Usernames are personal data and the hash is a secret: neither is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalAccount")
            .field("id", &self.id)
            .field("shop_id", &self.shop_id)
            .field("customer_id", &self.customer_id)
            .field("has_password", &self.password_hash.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
