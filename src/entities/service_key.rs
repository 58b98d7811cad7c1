//! A key the service made for itself, shared by every instance on the same database.

use sea_orm::entity::prelude::*;

/// One row of `service_keys`.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "service_keys")]
pub struct Model {
    /// What the key is for, e.g. `cookies`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Base64 of the key's bytes.
    pub key_material: String,
    pub created_at: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey").field("name", &self.name).finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
