//! The day-later look-up (contract §10): an SMS the gateway accepted more than a day ago that still
//! has no final report (its reports were lost, or never sent) is looked up once through the API, and
//! the answer applied as a report would be. Run by the housekeeping, a bounded batch per round.

use chrono::TimeDelta;
use sea_orm::DbErr;

use super::{Delivery, sms::LookedUp};
use crate::{invitations::state, outbox};

/// How long after its acceptance a message without a final report is looked up.
pub const LOOK_UP_AFTER: TimeDelta = TimeDelta::hours(24);
/// Messages accepted longer ago than this are not looked up any more: an answer would come too late
/// to help anyone, and a gateway that stays unreachable is not asked about them forever.
pub const LOOK_UP_WITHIN: TimeDelta = TimeDelta::days(7);
/// The most messages looked up in one round.
pub const BATCH: u64 = 20;

/// Looks up the messages that are due, up to [`BATCH`], and logs what it did. The round stops the
/// first time the gateway cannot be asked (that message stays due for the next round); a message
/// whose look-up got an answer, whatever it said, is not looked up again.
pub async fn look_up_overdue(delivery: &Delivery) {
    match round(delivery).await {
        Ok((0, None)) => {}
        Ok((looked_up, None)) => {
            tracing::info!(looked_up, "looked up SMS without a final report a day later")
        }
        Ok((looked_up, Some(reason))) => tracing::warn!(
            looked_up,
            %reason,
            "looking up SMS without a final report stopped: the gateway could not be asked; will retry"
        ),
        Err(error) => tracing::error!(%error, "looking up SMS without a final report failed; will retry"),
    }
}

/// One round: how many were looked up, and why it stopped early, if it did.
async fn round(delivery: &Delivery) -> Result<(usize, Option<String>), DbErr> {
    if delivery.sms.auth_token().is_none() {
        return Ok((0, None));
    }
    let db = &delivery.db;
    let now = delivery.clock.now();
    let due = outbox::look_up_due(db.conn(), now - LOOK_UP_AFTER, now - LOOK_UP_WITHIN, BATCH).await?;
    let mut looked_up = 0;
    for message in due {
        let id = message.id.clone();
        let now = delivery.clock.now();
        if !db.write(move |txn| Box::pin(async move { outbox::claim_look_up(txn, &id, now).await })).await? {
            continue;
        }
        let sid = message.provider_ref.clone().unwrap_or_default();
        let report = match delivery.sms.look_up(&sid).await {
            LookedUp::Status(report) => report,
            LookedUp::NoStatus => {
                looked_up += 1;
                continue;
            }
            stopped @ (LookedUp::Unreachable(_) | LookedUp::NoGateway) => {
                let id = message.id.clone();
                db.write(move |txn| Box::pin(async move { outbox::release_look_up(txn, &id).await })).await?;
                let reason = match stopped {
                    LookedUp::Unreachable(reason) => Some(reason),
                    _ => None,
                };
                return Ok((looked_up, reason));
            }
        };
        let now = delivery.clock.now();
        db.write(move |txn| {
            Box::pin(async move { state::record_sms_report(txn, &message, &report, now).await.map(|_| ()) })
        })
        .await?;
        looked_up += 1;
    }
    Ok((looked_up, None))
}
