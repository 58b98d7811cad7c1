//! Whether a customer may be invited now, and if not, why. A pure function of what is stored, so the
//! star-menu click and the dialog's submission apply exactly the same rules (the world may have
//! changed in between, so the submission asks again).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use super::{
    InvitationStatus, email_taken,
    standing::{self, InvitationStanding},
    state::current_invitation,
};
use crate::{
    domain::{CustomerId, E164Number, EmailAddress, SubscriptionTier},
    entities::{customer, shop},
    inbox::StoredAnswer,
};

/// The stored shop and customer a request is judged against.
#[derive(Debug, Clone)]
pub struct World {
    /// The shop, if it ever installed the plugin.
    pub shop: Option<shop::Model>,
    /// The customer as now stored.
    pub customer: Option<customer::Model>,
}

impl World {
    /// Applies the rules at `now`, reading the customer's invitation and the shop's usernames in `conn`.
    pub async fn evaluate<C: ConnectionTrait>(
        &self,
        conn: &C,
        now: DateTime<Utc>,
    ) -> Result<Result<Eligible, Refusal>, DbErr> {
        let (invitation, email_taken) = match (&self.shop, &self.customer) {
            (Some(shop), Some(customer)) => {
                let (shop_id, customer_id) = (shop.shop_id(), CustomerId::from_stored(customer.id.clone()));
                let invitation = match current_invitation(conn, &shop_id, &customer_id).await? {
                    Some(row) => Some(standing::load(conn, row, now).await?),
                    None => None,
                };
                let taken = match customer.email.as_deref().and_then(|e| EmailAddress::parse(e).ok()) {
                    Some(email) => email_taken(conn, &shop.id, &customer.id, &email).await?,
                    None => false,
                };
                (invitation, taken)
            }
            _ => (None, false),
        };
        Ok(evaluate(&Facts {
            shop: self.shop.as_ref(),
            customer: self.customer.as_ref(),
            invitation: invitation.as_ref(),
            email_taken,
        }))
    }
}

/// What claiming a star-menu message found: the world to judge it against, or why not to judge it.
pub enum Opened {
    /// First time: the world after the payload's snapshots.
    Fresh(Box<World>),
    /// Answered before: give this again.
    Answered(StoredAnswer),
    /// Claimed by a request still at work.
    InProgress,
}

/// Everything the rules look at.
pub struct Facts<'a> {
    /// The shop, if it ever installed the plugin.
    pub shop: Option<&'a shop::Model>,
    pub customer: Option<&'a customer::Model>,
    /// The customer's invitation that did not fail, if any, and what became of it.
    pub invitation: Option<&'a InvitationStanding>,
    /// Whether another customer of the shop already uses the customer's email as portal username.
    pub email_taken: bool,
}

/// Why no invitation can be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The plugin is not installed for the shop.
    ShopNotInstalled,
    /// The shop's tier does not include the portal.
    TierInsufficient(SubscriptionTier),
    /// The portal is not activated.
    PortalInactive,
    /// No email on the profile (or the profile was deleted).
    EmailMissing,
    /// Invited before (the invitation did not fail): it cannot be sent again. What became of it is
    /// told to the staff member.
    AlreadyInvited(Box<InvitationStanding>),
    /// Another customer of the shop uses this email as their username.
    EmailInUse(EmailAddress),
}

/// What an eligible customer can be invited with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    /// The address (and future username).
    pub email: EmailAddress,
    /// The mobile number, if the profile has one.
    pub mobile: Option<E164Number>,
}

/// The shop's part of the rules: installed, on a tier with the portal, the portal activated. Every
/// star-menu action checks it first.
pub fn serves_portal(shop: Option<&shop::Model>) -> Result<&shop::Model, Refusal> {
    let shop = shop.filter(|s| s.installed).ok_or(Refusal::ShopNotInstalled)?;
    let tier = shop.tier().ok_or(Refusal::ShopNotInstalled)?;
    if !tier.includes_portal() {
        return Err(Refusal::TierInsufficient(tier));
    }
    if !shop.portal_active {
        return Err(Refusal::PortalInactive);
    }
    Ok(shop)
}

/// Applies the rules in the order a front-desk person can act on them: the shop's set-up first,
/// then the profile, then the invitation's history.
pub fn evaluate(facts: &Facts<'_>) -> Result<Eligible, Refusal> {
    serves_portal(facts.shop)?;
    let customer = facts.customer.filter(|c| c.deleted_at.is_none()).ok_or(Refusal::EmailMissing)?;
    let email =
        customer.email.as_deref().and_then(|e| EmailAddress::parse(e).ok()).ok_or(Refusal::EmailMissing)?;
    // A failed invitation leaves room for a new one.
    if let Some(invitation) = facts.invitation.filter(|i| i.status != InvitationStatus::Failed) {
        return Err(Refusal::AlreadyInvited(Box::new(invitation.clone())));
    }
    if facts.email_taken {
        return Err(Refusal::EmailInUse(email));
    }
    let mobile = customer.mobile.as_deref().and_then(|m| E164Number::parse(m).ok());
    Ok(Eligible { email, mobile })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::Channel,
        invitations::standing::{Delivery, LinkState},
    };

    fn shop() -> shop::Model {
        shop::Model::example()
    }

    fn customer() -> customer::Model {
        customer::Model {
            shop_id: "shop_1".into(),
            id: "cus_1".into(),
            first_name: Some("Jana".into()),
            last_name: Some("Kowalski".into()),
            email: Some("jana@example.com".into()),
            mobile: Some("+61412345678".into()),
            version: 1,
            deleted_at: None,
            updated_at: 0,
        }
    }

    fn invitation(status: InvitationStatus) -> InvitationStanding {
        let at = DateTime::from_timestamp_millis(2_000).unwrap();
        InvitationStanding {
            id: "inv_1".into(),
            interaction_id: None,
            answered: true,
            status,
            channel: Channel::Sms,
            invited_at: at,
            invited_by: None,
            delivery: Delivery::SmsAccepted { at },
            link: LinkState::Unused { expires_at: at },
        }
    }

    fn check(
        shop: Option<shop::Model>,
        customer: Option<customer::Model>,
        inv: Option<InvitationStanding>,
        taken: bool,
    ) -> Result<Eligible, Refusal> {
        evaluate(&Facts {
            shop: shop.as_ref(),
            customer: customer.as_ref(),
            invitation: inv.as_ref(),
            email_taken: taken,
        })
    }

    #[test]
    fn a_gold_shop_with_an_active_portal_may_invite_a_customer_with_an_email() {
        let eligible = check(Some(shop()), Some(customer()), None, false).unwrap();
        assert_eq!(eligible.email.as_str(), "jana@example.com");
        assert!(eligible.mobile.is_some());
        let mut platinum = shop();
        platinum.subscription_tier = "platinum".into();
        assert!(check(Some(platinum), Some(customer()), None, false).is_ok());
        let failed_before = invitation(InvitationStatus::Failed);
        assert!(check(Some(shop()), Some(customer()), Some(failed_before), false).is_ok());
    }

    #[test]
    fn each_rule_refuses_with_its_reason_in_order() {
        let mut uninstalled = shop();
        uninstalled.installed = false;
        assert_eq!(check(None, Some(customer()), None, false), Err(Refusal::ShopNotInstalled));
        assert_eq!(check(Some(uninstalled), Some(customer()), None, false), Err(Refusal::ShopNotInstalled));

        let mut silver = shop();
        silver.subscription_tier = "silver".into();
        silver.portal_active = false;
        assert_eq!(
            check(Some(silver), Some(customer()), None, false),
            Err(Refusal::TierInsufficient(SubscriptionTier::Silver))
        );

        let mut inactive = shop();
        inactive.portal_active = false;
        assert_eq!(check(Some(inactive), Some(customer()), None, false), Err(Refusal::PortalInactive));

        let mut no_email = customer();
        no_email.email = None;
        assert_eq!(check(Some(shop()), Some(no_email), None, true), Err(Refusal::EmailMissing));
        let mut deleted = customer();
        deleted.deleted_at = Some(5);
        assert_eq!(check(Some(shop()), Some(deleted), None, false), Err(Refusal::EmailMissing));

        // Sent or still being retried, an invitation that did not fail is not sent again, whatever
        // else is wrong with the profile.
        for status in [InvitationStatus::Sent, InvitationStatus::Pending] {
            assert_eq!(
                check(Some(shop()), Some(customer()), Some(invitation(status)), true),
                Err(Refusal::AlreadyInvited(Box::new(invitation(status))))
            );
        }
        assert!(matches!(check(Some(shop()), Some(customer()), None, true), Err(Refusal::EmailInUse(_))));
    }

    #[test]
    fn a_customer_without_a_mobile_can_still_be_invited_by_email() {
        let mut no_mobile = customer();
        no_mobile.mobile = None;
        assert_eq!(check(Some(shop()), Some(no_mobile), None, false).unwrap().mobile, None);
    }
}
