//! File mode (no SMTP server or SMS gateway configured): each message is written to
//! `PORTAL_OUTBOX_DIR/<shop>/<customer>/<message>.eml|.sms`. Those files hold live links and personal
//! data, so they live exactly as long as their outbox row: [`sweep`] removes every file whose row is
//! gone (the customer was deleted, the shop erased), and with it the customer's and shop's folders
//! once empty.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::outbox::Attempt;
use crate::{db::Database, entities::outbox_message};

/// Where one message's file goes.
#[derive(Debug, Clone)]
pub struct MessageFile {
    shop_id: String,
    customer_id: Option<String>,
    message_id: String,
}

/// The folder name for messages not tied to a customer.
const NO_CUSTOMER: &str = "_";

impl MessageFile {
    /// The file of an outbox row.
    pub fn of(message: &outbox_message::Model) -> Self {
        Self {
            shop_id: message.shop_id.clone(),
            customer_id: message.customer_id.clone(),
            message_id: message.id.clone(),
        }
    }

    /// Its path under `dir`, with `extension` (`eml`, `sms`). Ids are in the host's id alphabet
    /// (letters, digits, `_`, `-`) or ours, so they are safe path components; anything else is
    /// replaced rather than trusted.
    pub fn path(&self, dir: &Path, extension: &str) -> PathBuf {
        dir.join(component(&self.shop_id))
            .join(component(self.customer_id.as_deref().unwrap_or(NO_CUSTOMER)))
            .join(format!("{}.{extension}", component(&self.message_id)))
    }
}

fn component(id: &str) -> String {
    let safe: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if safe.is_empty() { NO_CUSTOMER.to_owned() } else { safe }
}

/// Writes a message file atomically (a temporary name, then a rename), so a reader never sees half.
pub async fn write(path: &Path, bytes: &[u8]) -> Attempt {
    let result = async {
        let dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&temporary, bytes).await?;
        tokio::fs::rename(&temporary, path).await
    }
    .await;
    match result {
        Ok(()) => Attempt::Sent { provider_ref: None },
        Err(e) => Attempt::Transient {
            reason: format!("writing the message file: {}", e.kind()),
            retry_after: None,
        },
    }
}

/// Removes the message files under `dir` whose outbox row no longer exists, and folders left empty.
/// Returns how many files were removed.
pub async fn sweep(db: &Database, dir: &Path) -> Result<usize, DbErr> {
    let found = tokio::task::spawn_blocking({
        let dir = dir.to_owned();
        move || list(&dir)
    })
    .await
    .unwrap_or_default();
    if found.is_empty() {
        return Ok(0);
    }
    let mut kept = HashSet::new();
    for chunk in found.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let rows: Vec<String> = outbox_message::Entity::find()
            .select_only()
            .column(outbox_message::Column::Id)
            .filter(outbox_message::Column::Id.is_in(ids))
            .into_tuple()
            .all(db.conn())
            .await?;
        kept.extend(rows);
    }
    let orphans: Vec<PathBuf> =
        found.into_iter().filter(|(id, _)| !kept.contains(id)).map(|(_, path)| path).collect();
    let removed = orphans.len();
    let dir = dir.to_owned();
    let _ = tokio::task::spawn_blocking(move || {
        for path in &orphans {
            let _ = std::fs::remove_file(path);
            // The customer's folder, then the shop's, when nothing is left in them.
            let customer = path.parent();
            for folder in [customer, customer.and_then(Path::parent)].into_iter().flatten() {
                if folder != dir && folder.starts_with(&dir) {
                    let _ = std::fs::remove_dir(folder);
                }
            }
        }
    })
    .await;
    Ok(removed)
}

/// Every message file under `dir`, with its message id: `<shop>/<customer>/<message>.(eml|sms)`,
/// the temporary `.<message>.(eml|sms).tmp` of a write that was cut short, and files of the flat
/// layout of earlier versions (`<message>.(eml|sms)` directly in `dir`).
fn list(dir: &Path) -> Vec<(String, PathBuf)> {
    let entries = |path: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(path).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries(dir) {
        if !entry.is_dir() {
            files.push(entry);
            continue;
        }
        for customer in entries(&entry).into_iter().filter(|p| p.is_dir()) {
            files.extend(entries(&customer));
        }
    }
    files
        .into_iter()
        .filter_map(|file| {
            let name = file.file_name()?.to_str()?.to_owned();
            Some((message_id(&name)?, file))
        })
        .collect()
}

/// The message id in a message file's name, if it is one.
fn message_id(name: &str) -> Option<String> {
    let name = name.strip_suffix(".tmp").map(|n| n.strip_prefix('.').unwrap_or(n)).unwrap_or(name);
    let (id, extension) = name.rsplit_once('.')?;
    (matches!(extension, "eml" | "sms") && !id.is_empty() && !id.contains('.')).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_files_are_filed_by_shop_and_customer_and_cannot_leave_the_folder() {
        let file = MessageFile {
            shop_id: "shop_1".into(),
            customer_id: Some("cus_1".into()),
            message_id: "msg_ab".into(),
        };
        assert_eq!(file.path(Path::new("/o"), "eml"), PathBuf::from("/o/shop_1/cus_1/msg_ab.eml"));
        let hostile = MessageFile { shop_id: "../..".into(), customer_id: None, message_id: "a/b".into() };
        let path = hostile.path(Path::new("/o"), "sms");
        assert_eq!(path, PathBuf::from("/o/_____/_/a_b.sms"));
    }

    #[test]
    fn message_files_half_written_or_of_the_old_layout_are_recognised() {
        assert_eq!(message_id("msg_ab.eml").as_deref(), Some("msg_ab"));
        assert_eq!(message_id(".msg_ab.sms.tmp").as_deref(), Some("msg_ab"));
        for other in ["notes.txt", ".eml", "a.b.eml", "msg_ab.eml.bak", ".tmp", ""] {
            assert_eq!(message_id(other), None, "{other}");
        }
    }
}
