//! Where a customer stands, in the words a front-desk person reads aloud on the phone: who invited
//! them, how and when, what became of the message and of its link, their password, last login,
//! slowed logins and open sessions, and what happened lately. Every moment in the shop's time zone.

use chrono::{DateTime, Utc};

use super::{Audience, by, capitalised};
use crate::{
    access::standing::{AccountStanding, Standing},
    audit::Entry,
    domain::{Channel, DeliveryFailure},
    invitations::{
        InvitationStatus,
        standing::{Delivery, InvitationStanding, LinkState},
    },
};

impl Audience<'_> {
    fn at(&self, at: DateTime<Utc>) -> String {
        self.zone().moment(at)
    }
}

/// The invitation in a few sentences: sent how, when and by whom; delivered or not and why; its link.
pub fn invitation_line(invitation: &InvitationStanding, audience: &Audience<'_>) -> String {
    let mut line = format!("Invited {} on {}", by(invitation.channel), audience.at(invitation.invited_at));
    if let Some(name) = &invitation.invited_by {
        line.push_str(&format!(" by {name}"));
    }
    line.push('.');
    let delivery = delivery(invitation, audience);
    if !delivery.is_empty() {
        line.push(' ');
        line.push_str(&delivery);
    }
    let link = link(invitation, audience);
    if !link.is_empty() {
        line.push(' ');
        line.push_str(&link);
    }
    line
}

fn server(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "the email server",
        Channel::Sms => "the SMS service",
    }
}

fn delivery(invitation: &InvitationStanding, audience: &Audience<'_>) -> String {
    let channel = invitation.channel;
    match invitation.delivery {
        Delivery::Sending { attempts: 0 } => "It is being sent right now.".into(),
        Delivery::Sending { attempts } => format!(
            "Not delivered yet: {} hasn't accepted it, and delivery is being retried ({attempts} {} so far).",
            server(channel),
            if attempts == 1 { "attempt" } else { "attempts" }
        ),
        Delivery::EmailAccepted { at } => {
            format!("Delivered on {} (accepted by {}'s email server).", audience.at(at), audience.name())
        }
        Delivery::SmsAccepted { at } => format!(
            "Sent on {}; the SMS service hasn't confirmed delivery to the phone yet.",
            audience.at(at)
        ),
        Delivery::SmsDelivered { at } => format!("Delivered to the phone on {}.", audience.at(at)),
        Delivery::NotDelivered { at, reason } => {
            format!("Not delivered ({}): {}.", audience.at(at), failure(channel, reason))
        }
        Delivery::Cancelled { at, by_staff: true } => format!("Cancelled by staff on {}.", audience.at(at)),
        // The reasons vary (the address changed, the plugin was removed, the link ran out before it
        // could go): say what is certain.
        Delivery::Cancelled { at, by_staff: false } => {
            format!("Withdrawn on {} before it went out.", audience.at(at))
        }
        Delivery::Unknown => String::new(),
    }
}

/// Why a message did not arrive, in plain words.
pub fn failure(channel: Channel, reason: DeliveryFailure) -> String {
    let sms = "the mobile number could not receive SMS";
    match (reason, channel) {
        (DeliveryFailure::Refused, Channel::Email) => "the email server refused the address".into(),
        (DeliveryFailure::Refused, Channel::Sms) => "the SMS service refused the number".into(),
        (DeliveryFailure::GaveUp, channel) => {
            format!("{} couldn't be reached for hours, so we stopped trying", server(channel))
        }
        (DeliveryFailure::NotAMobile, _) => format!("{sms} (it is not a valid or known mobile number)"),
        (DeliveryFailure::Landline, _) => {
            format!("{sms} (it is a landline, or its carrier can't be reached)")
        }
        (DeliveryFailure::Blocked, _) => format!("{sms} (the carrier or the customer blocked the message)"),
        (DeliveryFailure::PhoneUnreachable, _) => {
            format!("{sms} (the phone was switched off or out of coverage)")
        }
        (DeliveryFailure::Unknown, _) => format!("{sms} (the SMS service didn't say why)"),
    }
}

fn link(invitation: &InvitationStanding, audience: &Audience<'_>) -> String {
    if invitation.status == InvitationStatus::Failed {
        return "Its link no longer works, so a new invitation can be sent.".into();
    }
    match invitation.link {
        LinkState::Used { at } => {
            format!("{} used the set-up link on {}.", capitalised(&audience.name()), audience.at(at))
        }
        LinkState::Unused { expires_at } => {
            format!("The set-up link hasn't been used yet; it works until {}.", audience.at(expires_at))
        }
        LinkState::Expired { at } => format!("The set-up link expired unused on {}.", audience.at(at)),
        LinkState::Dead => String::new(),
    }
}

/// The account in a few sentences: password, last login, slowed logins, open sessions.
pub fn account_line(account: &AccountStanding, audience: &Audience<'_>) -> String {
    let name = capitalised(&audience.name());
    let mut parts = Vec::new();
    match account.password_set_at {
        Some(at) => parts.push(format!("{name} set a password on {}.", audience.at(at))),
        None => parts.push(format!("{name} hasn't set a password yet.")),
    }
    match account.last_login_at {
        Some(at) => parts.push(format!("Last login: {}.", audience.at(at))),
        None if account.password_set_at.is_some() => parts.push(format!("{name} hasn't logged in yet.")),
        None => {}
    }
    if let Some(slowed) = account.slowed {
        let mut text =
            format!("Logins are being slowed down after {} failed attempts in a row", slowed.failures);
        if let Some(until) = slowed.until {
            text.push_str(&format!(" (the next try is possible from {})", audience.at(until)));
        }
        text.push_str(". \"Forgot password\" on the login page always works.");
        parts.push(text);
    }
    match account.live_sessions {
        0 => {}
        1 => parts.push("Logged in on 1 device right now.".into()),
        n => parts.push(format!("Logged in on {n} devices right now.")),
    }
    parts.join(" ")
}

/// The whole status: the invitation, then the account.
pub fn status(standing: &Standing, audience: &Audience<'_>) -> String {
    let mut parts = Vec::new();
    match &standing.invitation {
        Some(invitation) => parts.push(invitation_line(invitation, audience)),
        None => parts.push(format!("{} has never been invited.", capitalised(&audience.name()))),
    }
    if let Some(account) = &standing.account {
        parts.push(account_line(account, audience));
    }
    parts.join(" ")
}

/// The latest events, one line each, newest first.
pub fn history(entries: &[Entry], audience: &Audience<'_>) -> String {
    let lines: Vec<String> =
        entries.iter().map(|entry| format!("{}: {}", audience.at(entry.at), event(entry))).collect();
    format!("Recent activity:\n{}", lines.join("\n"))
}

fn event(entry: &Entry) -> String {
    let by_whom = entry.by.as_ref().map(|b| format!(" by {}", b.name)).unwrap_or_default();
    let channel = entry.channel().unwrap_or(Channel::Email);
    match entry.event.as_str() {
        "invited" => format!("invited {}{by_whom}", by(channel)),
        "delivered" => format!("invitation delivered ({})", channel_name(channel)),
        "delivery_failed" => format!(
            "invitation not delivered: {}",
            failure(channel, entry.failure().unwrap_or(DeliveryFailure::Unknown))
        ),
        "password_set" => "password set".into(),
        "logged_in" => "logged in".into(),
        "login_slowed" => "logins slowed down after failed attempts".into(),
        "reset_requested" => format!(
            "password-reset link emailed{}",
            entry.by.as_ref().map(|b| format!(" (asked for by {})", b.name)).unwrap_or_default()
        ),
        "reset_completed" => "new password set with a reset link".into(),
        "sessions_ended" => format!("signed out everywhere{by_whom}"),
        "invitation_cancelled" => format!("invitation cancelled{by_whom}"),
        "email_changed" => "email address changed on the profile".into(),
        "customer_erased" => "customer data erased".into(),
        other => other.replace('_', " "),
    }
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Sms => "SMS",
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::{access::standing::Slowed, entities::shop};

    fn shop() -> shop::Model {
        shop::Model::example()
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T23:00:00Z").unwrap().to_utc() + TimeDelta::minutes(minutes)
    }

    fn sms(delivery: Delivery, link: LinkState, status: InvitationStatus) -> InvitationStanding {
        InvitationStanding {
            id: "inv_1".into(),
            interaction_id: None,
            answered: true,
            status,
            channel: Channel::Sms,
            invited_at: at(0),
            invited_by: Some("Sam (front desk)".into()),
            delivery,
            link,
        }
    }

    #[test]
    fn every_delivery_state_reads_in_plain_words_in_the_shops_time() {
        let shop = shop();
        let audience = Audience { shop: Some(&shop), customer: None, login_url: String::new() };
        let unused = LinkState::Unused { expires_at: at(60 * 24 * 7) };
        let line = |delivery, status| invitation_line(&sms(delivery, unused, status), &audience);
        let pending = InvitationStatus::Pending;
        let sent = InvitationStatus::Sent;
        assert_eq!(
            line(Delivery::SmsDelivered { at: at(1) }, sent),
            "Invited by SMS on Wed 2 Dec 2026 at 9:00 AM AEST by Sam (front desk). Delivered to the phone on \
             Wed 2 Dec 2026 at 9:01 AM AEST. The set-up link hasn't been used yet; it works until Wed 9 Dec \
             2026 at 9:00 AM AEST."
        );
        assert!(line(Delivery::Sending { attempts: 0 }, pending).contains("It is being sent right now."));
        assert!(line(Delivery::Sending { attempts: 3 }, pending).contains(
            "the SMS service hasn't accepted it, and delivery is being retried (3 attempts so far)"
        ));
        assert!(
            line(Delivery::SmsAccepted { at: at(0) }, sent)
                .contains("the SMS service hasn't confirmed delivery to the phone yet")
        );
        let failed = InvitationStatus::Failed;
        let not_delivered =
            line(Delivery::NotDelivered { at: at(2), reason: DeliveryFailure::PhoneUnreachable }, failed);
        assert!(
            not_delivered.contains(
                "Not delivered (Wed 2 Dec 2026 at 9:02 AM AEST): the mobile number could not receive SMS (the \
                 phone was switched off or out of coverage). Its link no longer works, so a new invitation can \
                 be sent."
            ),
            "{not_delivered}"
        );
        for (reason, words) in [
            (DeliveryFailure::NotAMobile, "not a valid or known mobile number"),
            (DeliveryFailure::Landline, "it is a landline"),
            (DeliveryFailure::Blocked, "blocked the message"),
            (DeliveryFailure::Unknown, "didn't say why"),
            (DeliveryFailure::Refused, "the SMS service refused the number"),
            (DeliveryFailure::GaveUp, "couldn't be reached for hours"),
        ] {
            assert!(failure(Channel::Sms, reason).contains(words), "{reason:?}");
        }
        assert_eq!(failure(Channel::Email, DeliveryFailure::Refused), "the email server refused the address");
        assert!(
            line(Delivery::Cancelled { at: at(5), by_staff: true }, failed).contains("Cancelled by staff on")
        );
        assert!(
            line(Delivery::Cancelled { at: at(5), by_staff: false }, failed)
                .contains("Withdrawn on Wed 2 Dec 2026 at 9:05 AM AEST before it went out.")
        );
        let expired = invitation_line(
            &sms(Delivery::SmsDelivered { at: at(1) }, LinkState::Expired { at: at(9) }, sent),
            &audience,
        );
        assert!(expired.contains("The set-up link expired unused on Wed 2 Dec 2026 at 9:09 AM AEST."));
    }

    #[test]
    fn the_account_line_says_password_login_slowing_and_devices() {
        let shop = shop();
        let audience = Audience { shop: Some(&shop), customer: None, login_url: String::new() };
        let mut account = AccountStanding {
            id: "acc_1".into(),
            password_set_at: None,
            last_login_at: None,
            slowed: None,
            live_sessions: 0,
        };
        assert_eq!(account_line(&account, &audience), "The customer hasn't set a password yet.");
        account.password_set_at = Some(at(10));
        account.live_sessions = 2;
        account.slowed = Some(Slowed { failures: 7, until: Some(at(12)) });
        assert_eq!(
            account_line(&account, &audience),
            "The customer set a password on Wed 2 Dec 2026 at 9:10 AM AEST. The customer hasn't logged in yet. \
             Logins are being slowed down after 7 failed attempts in a row (the next try is possible from Wed \
             2 Dec 2026 at 9:12 AM AEST). \"Forgot password\" on the login page always works. Logged in on 2 \
             devices right now."
        );
    }
}
