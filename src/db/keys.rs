//! Keys the service makes for itself (for cookies, CSRF tokens and the like). Each is generated once
//! and stored in the database, so every instance sharing the database uses the same key and an
//! operator has nothing to configure.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use sea_orm::{DbErr, EntityTrait, sea_query::OnConflict};

use super::Database;
use crate::{clock::to_millis, entities::service_key};

/// A key's bytes; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceKey(Vec<u8>);

impl ServiceKey {
    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceKey(redacted)")
    }
}

/// The key called `name`: the stored one, or a new random 64-byte key stored now. When several
/// instances start at once, the first insert wins and every instance reads that one back.
pub async fn load_or_create(db: &Database, name: &str, now: DateTime<Utc>) -> Result<ServiceKey, DbErr> {
    let name = name.to_owned();
    db.write(move |txn| {
        Box::pin(async move {
            let candidate = service_key::ActiveModel {
                name: sea_orm::Set(name.clone()),
                key_material: sea_orm::Set(STANDARD.encode(crate::random::bytes::<64>())),
                created_at: sea_orm::Set(to_millis(now)),
            };
            service_key::Entity::insert(candidate)
                .on_conflict(OnConflict::column(service_key::Column::Name).do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
            let stored = service_key::Entity::find_by_id(name.clone())
                .one(txn)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("service key {name}")))?;
            STANDARD
                .decode(stored.key_material)
                .map(ServiceKey)
                .map_err(|_| DbErr::Custom(format!("the stored service key {name} is not base64")))
        })
    })
    .await
}
