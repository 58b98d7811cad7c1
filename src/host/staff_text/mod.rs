//! What the staff member reads in the host's dialog and confirmation bar: short, plain, and saying
//! what to do next. Dates are in the shop's time zone.

pub mod access;
pub mod status;

use chrono::{DateTime, Utc};

use super::dialog::{ActionResponse, Dialog, DialogField, DialogOption, Level, OpenDialog};
use crate::{
    domain::{Channel, TimeZone},
    entities::{customer, shop},
    invitations::eligibility::{Eligible, Refusal},
};

/// The dialog's title (as in the manifest's action label).
pub const TITLE: &str = "Send Customer Portal Invitation";

/// What the texts need to know about the shop and the customer.
pub struct Audience<'a> {
    pub shop: Option<&'a shop::Model>,
    pub customer: Option<&'a customer::Model>,
    pub login_url: String,
}

impl Audience<'_> {
    fn zone(&self) -> TimeZone {
        self.shop.map_or_else(TimeZone::utc, shop::Model::time_zone)
    }

    /// "Jana", or "the customer" when the profile has no first name.
    fn name(&self) -> String {
        self.customer.and_then(|c| c.first_name.clone()).unwrap_or_else(|| "the customer".to_owned())
    }

    fn when(&self, at: DateTime<Utc>) -> String {
        self.zone().describe(at)
    }
}

fn by(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "by email",
        Channel::Sms => "by SMS",
    }
}

/// The message for a refusal (level, code and text).
pub fn refusal(refusal: &Refusal, audience: &Audience<'_>) -> ActionResponse {
    let name = audience.name();
    let (level, code, text) = match refusal {
        Refusal::ShopNotInstalled => (
            Level::Error,
            "shop_not_installed",
            "The Customer Portal Invitations plugin is not installed for this shop. Install it from the \
             plugin list in your settings, then try again."
                .to_owned(),
        ),
        Refusal::TierInsufficient(tier) => (
            Level::Error,
            "subscription_tier_insufficient",
            format!(
                "Customer Portal invitations are part of the Gold subscription, and this shop is on {}. \
                 Upgrade to Gold or Platinum to invite customers.",
                capitalised(tier.as_str())
            ),
        ),
        Refusal::PortalInactive => (
            Level::Error,
            "portal_inactive",
            "The Customer Portal is not activated for this shop yet. Activate it under Settings > \
             Customer Portal, then send the invitation again."
                .to_owned(),
        ),
        Refusal::EmailMissing => (
            Level::Error,
            "customer_email_missing",
            format!(
                "This customer has no email address. The email address becomes {name}'s username for the \
                 Customer Portal, so add it to the customer profile first, then send the invitation."
            ),
        ),
        Refusal::AlreadyInvited(invitation) => (
            Level::Error,
            "invitation_already_sent",
            format!(
                "{} was already invited, so the invitation can't be sent again. {} If {name} can't log in, \
                 they can reset the password with \"Forgot password\" on the login page: {}",
                capitalised(&name),
                status::invitation_line(invitation, audience),
                audience.login_url
            ),
        ),
        Refusal::EmailInUse(email) => (
            Level::Error,
            "email_in_use",
            format!(
                "Another customer of this shop already uses {email} as their Customer Portal username \
                 (for example a family member sharing the address). Each customer needs their own email \
                 address: change it on this profile, then send the invitation."
            ),
        ),
    };
    ActionResponse::message(level, code, text)
}

/// The email / SMS dialog; SMS is shown disabled, with the reason, when there is no mobile number.
pub fn dialog(eligible: &Eligible) -> ActionResponse {
    let sms = match &eligible.mobile {
        Some(mobile) => {
            DialogOption { value: "sms".into(), label: format!("SMS to {mobile}"), disabled: Some(false) }
        }
        None => DialogOption {
            value: "sms".into(),
            label: "SMS (not available: no mobile number on this profile)".into(),
            disabled: Some(true),
        },
    };
    ActionResponse::OpenDialog(OpenDialog {
        dialog: Dialog {
            title: TITLE.into(),
            submit_label: "Send".into(),
            cancel_label: "Cancel".into(),
            fields: vec![DialogField::radio(
                "channel",
                "Send the invitation by",
                vec![
                    DialogOption {
                        value: "email".into(),
                        label: format!("Email to {}", eligible.email),
                        disabled: None,
                    },
                    sms,
                ],
            )],
        },
    })
}

/// The choice was neither email nor SMS.
pub fn invalid_channel() -> ActionResponse {
    ActionResponse::field_error(
        "channel",
        "invalid_channel",
        "Choose how to send the invitation: email or SMS.".into(),
    )
}

/// SMS was chosen, but the profile has no mobile number.
pub fn mobile_missing() -> ActionResponse {
    ActionResponse::field_error(
        "channel",
        "customer_mobile_missing",
        "This customer has no mobile number. Choose email, or add a mobile number to the profile first."
            .into(),
    )
}

/// The mail server or SMS gateway accepted the invitation.
pub fn sent(
    channel: Channel,
    recipient: &str,
    expires_at: DateTime<Utc>,
    audience: &Audience<'_>,
) -> ActionResponse {
    ActionResponse::close(
        Level::Success,
        "invitation_sent",
        format!(
            "Invitation sent to {} {} ({recipient}). The set-up link works until {}.",
            audience.name(),
            by(channel),
            audience.when(expires_at)
        ),
    )
}

/// Accepted by us, but not yet by the mail server or gateway.
pub fn queued(channel: Channel, recipient: &str, audience: &Audience<'_>) -> ActionResponse {
    let server = match channel {
        Channel::Email => "the email server",
        Channel::Sms => "the SMS service",
    };
    ActionResponse::close(
        Level::Info,
        "invitation_queued",
        format!(
            "The invitation to {} {} ({recipient}) is queued: {server} hasn't accepted it yet, so we'll keep \
             trying for the next few hours. You don't need to send it again.",
            audience.name(),
            by(channel)
        ),
    )
}

/// The invitation was cancelled before it went out: the profile or the shop changed (or was erased)
/// at the same moment.
pub fn changed_meanwhile() -> ActionResponse {
    ActionResponse::close(
        Level::Error,
        "customer_email_missing",
        "The invitation was not sent: the customer profile or the shop changed at the same moment. \
         Refresh the profile and try again."
            .to_owned(),
    )
}

/// The mail server or gateway refused the address or number for good; the dialog stays open so the
/// staff member can pick the other channel after fixing the profile.
pub fn rejected(channel: Channel, recipient: &str, reason: &str) -> ActionResponse {
    let (what, fix) = match channel {
        Channel::Email => ("email server", "Check the email address on the profile, or send by SMS."),
        Channel::Sms => ("SMS service", "Check the mobile number on the profile, or send by email."),
    };
    ActionResponse::field_error(
        "channel",
        "invalid_channel",
        format!("The {what} refused {recipient}, so nothing was sent ({reason}). {fix}"),
    )
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::changed_meanwhile;

    #[test]
    fn the_changed_meanwhile_text_reads_as_one_sentence_pair() {
        // The code before the restructure stored a stray backslash, a newline and spaces mid-text.
        let answer: serde_json::Value = serde_json::from_str(&changed_meanwhile().to_json()).unwrap();
        assert_eq!(
            answer["message"]["text"],
            "The invitation was not sent: the customer profile or the shop changed at the same moment. \
             Refresh the profile and try again."
        );
        assert_eq!(answer["response_action"], "close");
    }
}
