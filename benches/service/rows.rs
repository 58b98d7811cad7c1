//! After an intake scenario, the rows the service left, counted against what it answered `204` to:
//! every message stored once, and every customer at the newest version the host sent.

use std::collections::{HashMap, HashSet};

use portal_invites::{
    db::ROWS_PER_STATEMENT,
    entities::{customer, webhook_message},
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

use super::scenarios::{SHOP, SentMessage};

/// What the count found.
pub struct Count {
    /// Distinct message ids answered `204` in the scenario.
    pub answered: usize,
    /// Of those, how many the inbox holds.
    pub stored: u64,
    /// Customers whose stored version is not the newest one sent (over all scenarios so far).
    pub wrong_version: usize,
    /// Customers looked at.
    pub customers: usize,
}

impl Count {
    /// Whether every message is stored exactly once and no older version won.
    pub fn exact(&self) -> bool {
        self.stored == self.answered as u64 && self.wrong_version == 0
    }

    /// One sentence for the report.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} messages answered 204 are in the inbox, each once (the id is its key); {} of {} customers \
             hold the newest version sent",
            self.stored,
            self.answered,
            self.customers - self.wrong_version,
            self.customers
        )
    }
}

/// Counts the rows of `scenario` (the messages it sent) against `everything` sent so far.
pub async fn count(conn: &DatabaseConnection, scenario: &[SentMessage], everything: &[SentMessage]) -> Count {
    let ids: Vec<&str> = scenario.iter().map(|m| m.id.as_str()).collect::<HashSet<_>>().into_iter().collect();
    let mut stored = 0u64;
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        stored += webhook_message::Entity::find()
            .filter(webhook_message::Column::Id.is_in(chunk.iter().copied()))
            .count(conn)
            .await
            .expect("the inbox can be counted");
    }
    let mut newest: HashMap<String, i64> = HashMap::new();
    for message in everything {
        let version = newest.entry(format!("cus_{}", message.customer)).or_insert(i64::MIN);
        *version = (*version).max(message.version);
    }
    let held: HashMap<String, i64> = customer::Entity::find()
        .filter(customer::Column::ShopId.eq(SHOP))
        .all(conn)
        .await
        .expect("the customers can be read")
        .into_iter()
        .map(|c| (c.id, c.version))
        .collect();
    let wrong_version = newest.iter().filter(|(id, version)| held.get(*id) != Some(version)).count();
    Count { answered: ids.len(), stored, wrong_version, customers: newest.len() }
}

/// `portal_webhooks_total` for `customer.updated`, by outcome, from an instance's metrics listener.
pub async fn webhook_outcomes(metrics: std::net::SocketAddr) -> HashMap<String, u64> {
    let mut conn = super::load::connect(metrics).await.expect("the metrics listener accepts connections");
    let request =
        hyper::Request::get("/metrics").header("host", "127.0.0.1").body(Default::default()).unwrap();
    let reply = super::load::send(&mut conn, request).await.expect("the metrics answer");
    let text = String::from_utf8_lossy(&reply.body);
    let mut outcomes = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("portal_webhooks_total{") && l.contains("type=\"customer.updated\""))
    {
        let Some(outcome) = line.split("outcome=\"").nth(1).and_then(|rest| rest.split('"').next()) else {
            continue;
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        *outcomes.entry(outcome.to_owned()).or_insert(0) += value as u64;
    }
    outcomes
}
