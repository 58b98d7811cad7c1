//! The staff's view of a customer's portal access (contract §9): where the customer stands
//! ([`standing`]), which acts fit that state ([`choices`]), and the acts themselves, each re-checked
//! against the stored state in the caller's transaction and recorded in the audit trail with the
//! staff member who did it: email a password-reset link, end every portal session, cancel an
//! invitation whose link was never used (a new one may then be sent).
//!
//! Knows no HTTP and no wording: `host::actions` parses the host's messages and `host::staff_text`
//! words what this module returns.

pub mod standing;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DbErr};

use crate::{
    accounts::{
        reset::{self, NotSent, RESETS_PER_HOUR},
        sessions,
        throttle::Keys,
    },
    audit::{self, Event},
    config::PortalSettings,
    domain::{Channel, CustomerId, EmailAddress, ShopId, StaffMember},
    entities::customer,
    identity,
    invitations::{standing::LinkState, state},
    outbox::{self, Link, MessageKind, NewMessage},
    sealing::Sealer,
};
pub use standing::Standing;
use standing::load;

/// What the acts need from the service.
pub struct PortalAccess {
    /// Names the customer's login-throttle counter, to tell whether logins are slowed.
    throttle_keys: Keys,
    /// How long a reset link works (`PORTAL_RESET_TTL`).
    reset_ttl: Duration,
    /// A session unused this long is over (`PORTAL_SESSION_IDLE`).
    session_idle: Duration,
    /// Seals a staff-requested reset link into its outbox row.
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for PortalAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalAccess").field("reset_ttl", &self.reset_ttl).finish_non_exhaustive()
    }
}

/// One of the dialog's choices (the radio field `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Email the customer a password-reset link.
    PasswordReset,
    /// End every portal session of the customer.
    EndSessions,
    /// Cancel an invitation whose link was never used.
    CancelInvitation,
}

impl Choice {
    /// The radio value, as the contract names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EndSessions => "end_sessions",
            Self::CancelInvitation => "cancel_invitation",
        }
    }

    /// Parses a radio value.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::PasswordReset, Self::EndSessions, Self::CancelInvitation]
            .into_iter()
            .find(|c| c.as_str() == value)
    }
}

/// The customer's standing and what can be done about it now.
#[derive(Debug, Clone)]
pub struct Overview {
    pub standing: Standing,
    pub choices: Vec<Choice>,
    /// Reset links were emailed this often in the last hour, up to the cap.
    pub resets_capped: bool,
}

/// What an act did.
#[derive(Debug, Clone)]
pub enum Done {
    /// A reset link is queued for this address; it works until then.
    ResetSent { to: EmailAddress, expires_at: DateTime<Utc> },
    /// This many sessions ended (access tokens handed to the host's portal were revoked too).
    SessionsEnded { sessions: u64 },
    /// The invitation sent by this channel was cancelled; its link is dead.
    InvitationCancelled { channel: Channel },
}

/// Why an act was not done: the state no longer fits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotDone {
    /// The customer has no portal account (never invited, or erased).
    NoAccount,
    /// No email address on the profile: a reset link has nowhere to go.
    EmailMissing,
    /// The customer has no password yet: there is nothing to reset (their set-up link is the way in).
    NoPassword,
    /// Reset links were emailed [`RESETS_PER_HOUR`] times in the last hour.
    ResetsCapped,
    /// No invitation that could be cancelled.
    NothingToCancel,
    /// The invitation's link was used: the customer set a password, it cannot be cancelled.
    LinkUsed,
}

impl PortalAccess {
    /// For the settings' reset and session lifetimes, keyed like the login throttle.
    pub fn new(service_key: &[u8], portal: &PortalSettings, sealer: Arc<Sealer>) -> Self {
        Self {
            throttle_keys: Keys::derive(service_key),
            reset_ttl: portal.reset_ttl,
            session_idle: portal.session_idle,
            sealer,
        }
    }

    fn readers(&self) -> standing::Readers<'_> {
        standing::Readers { keys: &self.throttle_keys, session_idle: self.session_idle }
    }

    /// Where the customer stands and which choices fit.
    pub async fn overview<C: ConnectionTrait>(
        &self,
        conn: &C,
        shop_id: &ShopId,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Overview, DbErr> {
        let standing = load(conn, &self.readers(), shop_id, customer_id, now).await?;
        let profile = standing::profile(conn, shop_id, customer_id).await?;
        let resets = match &standing.account {
            Some(account) => reset::resets_in_last_hour(conn, &account.id, now).await?,
            None => 0,
        };
        let resets_capped = resets >= RESETS_PER_HOUR;
        let choices = choices(&standing, profile_email(profile.as_ref()).is_some(), resets_capped);
        Ok(Overview { standing, choices, resets_capped })
    }

    /// Does `choice` for the customer, if it still fits, recording it in the audit trail.
    pub async fn act<C: ConnectionTrait>(
        &self,
        conn: &C,
        shop_id: &ShopId,
        customer_id: &str,
        choice: Choice,
        by: &StaffMember,
        now: DateTime<Utc>,
    ) -> Result<Result<Done, NotDone>, DbErr> {
        let standing = load(conn, &self.readers(), shop_id, customer_id, now).await?;
        let done = match choice {
            Choice::PasswordReset => self.send_reset(conn, shop_id, customer_id, &standing, now).await?,
            Choice::EndSessions => end_sessions(conn, &standing, now).await?,
            Choice::CancelInvitation => cancel_invitation(conn, &standing, now).await?,
        };
        if let Ok(done) = &done {
            let event = match done {
                Done::ResetSent { .. } => Event::ResetRequested,
                Done::SessionsEnded { .. } => Event::SessionsEnded,
                Done::InvitationCancelled { .. } => Event::InvitationCancelled,
            };
            audit::record(conn, shop_id.as_str(), customer_id, event, Some(by), now).await?;
        }
        Ok(done)
    }

    async fn send_reset<C: ConnectionTrait>(
        &self,
        conn: &C,
        shop_id: &ShopId,
        customer_id: &str,
        standing: &Standing,
        now: DateTime<Utc>,
    ) -> Result<Result<Done, NotDone>, DbErr> {
        let Some(account) = &standing.account else { return Ok(Err(NotDone::NoAccount)) };
        let profile = standing::profile(conn, shop_id, customer_id).await?;
        let Some(email) = profile_email(profile.as_ref()) else { return Ok(Err(NotDone::EmailMissing)) };
        if account.password_set_at.is_none() {
            return Ok(Err(NotDone::NoPassword));
        }
        let minted =
            match reset::mint_link_for_customer(conn, shop_id, customer_id, self.reset_ttl, now).await? {
                Ok(minted) => minted,
                Err(NotSent::Capped) => return Ok(Err(NotDone::ResetsCapped)),
                Err(NotSent::NoAccount) => return Ok(Err(NotDone::NoAccount)),
            };
        let expires_at = now + TimeDelta::from_std(self.reset_ttl).unwrap_or(TimeDelta::hours(1));
        let customer_id = CustomerId::from_stored(customer_id.to_owned());
        let link = Link { token_id: &minted.token_id, token: &minted.token, sealer: &self.sealer };
        outbox::enqueue(
            conn,
            NewMessage {
                shop_id,
                customer_id: Some(&customer_id),
                kind: MessageKind::PasswordReset,
                channel: Channel::Email,
                recipient: &minted.recipient,
                invitation_id: None,
                link: Some(link),
            },
            None,
            now,
        )
        .await?;
        Ok(Ok(Done::ResetSent { to: email, expires_at }))
    }
}

/// The choices that fit `standing`: a reset only for a customer with a password and an email (and
/// under the hourly cap), ending sessions only when there are some, cancelling only an invitation
/// whose link was never used.
pub fn choices(standing: &Standing, has_email: bool, resets_capped: bool) -> Vec<Choice> {
    let mut choices = Vec::new();
    if let Some(account) = &standing.account {
        if account.password_set_at.is_some() && has_email && !resets_capped {
            choices.push(Choice::PasswordReset);
        }
        if account.live_sessions > 0 {
            choices.push(Choice::EndSessions);
        }
    }
    if cancellable(standing) {
        choices.push(Choice::CancelInvitation);
    }
    choices
}

/// A live invitation whose link was never used, for a customer without a password.
fn cancellable(standing: &Standing) -> bool {
    let has_password = standing.account.as_ref().is_some_and(|a| a.password_set_at.is_some());
    standing.live_invitation().is_some_and(|i| !matches!(i.link, LinkState::Used { .. })) && !has_password
}

async fn end_sessions<C: ConnectionTrait>(
    conn: &C,
    standing: &Standing,
    now: DateTime<Utc>,
) -> Result<Result<Done, NotDone>, DbErr> {
    let Some(account) = &standing.account else { return Ok(Err(NotDone::NoAccount)) };
    let sessions = sessions::end_all(conn, &account.id).await?;
    identity::grants::revoke_all_for_account(conn, &account.id, now).await?;
    Ok(Ok(Done::SessionsEnded { sessions }))
}

async fn cancel_invitation<C: ConnectionTrait>(
    conn: &C,
    standing: &Standing,
    now: DateTime<Utc>,
) -> Result<Result<Done, NotDone>, DbErr> {
    let Some(invitation) = standing.live_invitation() else { return Ok(Err(NotDone::NothingToCancel)) };
    if standing.account.as_ref().is_some_and(|a| a.password_set_at.is_some())
        || matches!(invitation.link, LinkState::Used { .. })
    {
        return Ok(Err(NotDone::LinkUsed));
    }
    // The link is killed first, by a conditional update: a customer using it at this moment either
    // finds it dead, or used it first and the cancellation is refused.
    if !state::cancel_by_staff(conn, &invitation.id, now).await? {
        return Ok(Err(NotDone::LinkUsed));
    }
    Ok(Ok(Done::InvitationCancelled { channel: invitation.channel }))
}

fn profile_email(profile: Option<&customer::Model>) -> Option<EmailAddress> {
    profile.and_then(|c| c.email.as_deref()).and_then(|e| EmailAddress::parse(e).ok())
}
