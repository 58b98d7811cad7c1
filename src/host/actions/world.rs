//! The stored world an action is judged against: the shop and the customer after the payload's
//! snapshots were applied (each only if newer than what is stored), locked until the transaction
//! ends on PostgreSQL.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr};

use super::{Action, Stop, info};
use crate::{
    domain::{EmailAddress, ShopId, WebhookId},
    entities::{customer, shop},
    host::dedupe::{self, Claim, StoredAnswer},
    invitations::{
        self,
        eligibility::{self, Eligible, Facts, Refusal},
        staff_text::Audience,
    },
    links,
    shops::{self, records},
};

/// See the module documentation.
pub(super) struct World {
    /// The shop, if it ever installed the plugin.
    pub shop: Option<shop::Model>,
    /// The customer as now stored.
    pub customer: Option<customer::Model>,
}

impl World {
    /// Claims the message; if it was answered before, that answer, otherwise the world after the
    /// payload's snapshots were applied.
    pub async fn claim_and_load(
        txn: &DatabaseTransaction,
        id: &WebhookId,
        action: &Action,
        shop_id: &ShopId,
        now: DateTime<Utc>,
    ) -> Result<Result<Self, StoredAnswer>, Stop> {
        match dedupe::claim(txn, &info(id, shop_id, action), now).await? {
            Claim::Fresh => Ok(Ok(Self::load_and_update(txn, action, shop_id, now).await?)),
            Claim::Answered(answer) => Ok(Err(answer)),
            Claim::InProgress => Err(Stop::WaitForInteraction),
        }
    }

    async fn load_and_update(
        txn: &DatabaseTransaction,
        action: &Action,
        shop_id: &ShopId,
        now: DateTime<Utc>,
    ) -> Result<Self, DbErr> {
        // Locked on PostgreSQL, the shop first and then (in `update_customer`) the customer, as a
        // deletion of the customer locks them: the rules below judge rows nobody else changes
        // until this transaction ends.
        let Some(stored) = records::lock_shop(txn, shop_id.as_str()).await? else {
            // Never installed: nothing is stored for a shop we do not serve.
            return Ok(Self { shop: None, customer: None });
        };
        let shop = if action.shop.version > stored.version {
            records::store_shop(txn, &action.shop, now).await?;
            records::shop_row(stored, &action.shop, now)
        } else {
            stored
        };
        let (_, customer) = shops::update_customer(txn, &shop, &action.customer, now).await?;
        Ok(Self { shop: Some(shop), customer })
    }

    /// Applies the rules.
    pub async fn evaluate(&self, txn: &DatabaseTransaction) -> Result<Result<Eligible, Refusal>, DbErr> {
        let (invitation, email_taken) = match (&self.shop, &self.customer) {
            (Some(shop), Some(customer)) => {
                let invitation = invitations::current_invitation(txn, &shop.id, &customer.id).await?;
                let taken = match customer.email.as_deref().and_then(|e| EmailAddress::parse(e).ok()) {
                    Some(email) => invitations::email_taken(txn, &shop.id, &customer.id, &email).await?,
                    None => false,
                };
                (invitation, taken)
            }
            _ => (None, false),
        };
        Ok(eligibility::evaluate(&Facts {
            shop: self.shop.as_ref(),
            customer: self.customer.as_ref(),
            invitation: invitation.as_ref(),
            email_taken,
        }))
    }

    /// Who the staff texts are about.
    pub fn audience(&self, public_url: &url::Url) -> Audience<'_> {
        Audience {
            shop: self.shop.as_ref(),
            customer: self.customer.as_ref(),
            login_url: self.shop.as_ref().map(|s| links::login(public_url, &s.id)).unwrap_or_default(),
        }
    }
}
