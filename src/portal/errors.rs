//! Everything that can stop a customer page, and the page each one gets. [`PortalError::page`] is the
//! one place these become HTTP statuses; a customer never sees a raw error or a stack trace.

use std::time::Duration;

use poem::{Response, http::StatusCode};

use super::{
    PortalContext,
    pages::{self, Base, Notice},
};
use crate::{accounts::AccountError, entities::shop};

/// Why a customer page could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// No such page, or no such shop.
    #[error("not found")]
    NotFound,
    /// The shop does not serve its portal now (uninstalled, below gold, or not activated).
    #[error("the portal is not available")]
    Unavailable(Box<shop::Model>),
    /// A set-up or reset link that is unknown, expired or already used.
    #[error("the link is not valid")]
    LinkInvalid(Box<shop::Model>),
    /// A form without a valid CSRF token, or posted from another site.
    #[error("the form could not be verified")]
    FormRejected(Option<Box<shop::Model>>),
    /// Too many failed logins: wait.
    #[error("too many attempts")]
    Throttled { shop: Box<shop::Model>, retry_after: Duration },
    /// Too many reset requests from this client: wait.
    #[error("too many reset requests")]
    ResetsThrottled { shop: Box<shop::Model>, retry_after: Duration },
    /// Password hashing is at capacity: retry in a moment.
    #[error("busy")]
    Busy(Option<Box<shop::Model>>),
    /// A sign-in request from an address we cannot trust to send the answer back to (an unknown
    /// client, or a redirect URI the shop did not register): shown, never redirected (RFC 6749
    /// §4.1.2.1).
    #[error("sign-in request refused: {reason}")]
    SignInRefused { shop: Box<shop::Model>, reason: &'static str },
    /// A sign-in that waited for the customer to log in is gone (expired or already answered).
    #[error("the sign-in request expired")]
    SignInExpired(Box<shop::Model>),
    /// A body that is not a form.
    #[error("bad request")]
    BadRequest,
    /// A fault of ours, logged.
    #[error("internal error: {0}")]
    Internal(String),
}

/// "a minute", "5 minutes": a wait, rounded up to whole minutes.
fn wait_text(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    if minutes == 1 { "a minute".to_owned() } else { format!("{minutes} minutes") }
}

impl From<sea_orm::DbErr> for PortalError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Internal(e.to_string())
    }
}

impl PortalError {
    /// What an account rule's refusal means on a page of `shop`.
    pub fn from_accounts(error: AccountError, shop: &shop::Model) -> Self {
        let shop = Box::new(shop.clone());
        match error {
            AccountError::Busy => Self::Busy(Some(shop)),
            AccountError::LoginThrottled { retry_after } => Self::Throttled { shop, retry_after },
            AccountError::ResetThrottled { retry_after } => Self::ResetsThrottled { shop, retry_after },
            AccountError::LinkInvalid => Self::LinkInvalid(shop),
            AccountError::Db(error) => error.into(),
        }
    }

    /// The page for this error.
    pub fn page(self, portal: &PortalContext) -> Response {
        let base = |shop: &Option<Box<shop::Model>>, title: &str| match shop {
            Some(shop) => Base::shop(portal, shop, title),
            None => Base::plain(title),
        };
        let (status, notice, retry_after) = match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                notice(
                    Base::plain("Page not found"),
                    "Page not found",
                    "There is no page at this address. Check the link, or ask your workshop for the right one.",
                    false,
                ),
                None,
            ),
            Self::Unavailable(shop) => {
                let name = shop.name.clone();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    notice(
                        Base::shop(portal, &shop, "Customer Portal not available"),
                        "The Customer Portal is not available",
                        &format!(
                            "{name}'s Customer Portal is not available at the moment. For help, contact {name}:"
                        ),
                        true,
                    ),
                    None,
                )
            }
            Self::LinkInvalid(shop) => (
                StatusCode::NOT_FOUND,
                notice(
                    Base::shop(portal, &shop, "This link no longer works"),
                    "This link no longer works",
                    "The link has expired or was already used. If you have set your password, log in. If not, or if you \
                     forgot it, ask for a new link with \"Forgot your password?\": it works for invitations too.",
                    false,
                ),
                None,
            ),
            Self::FormRejected(shop) => (
                StatusCode::FORBIDDEN,
                notice(
                    base(&shop, "Please try again"),
                    "Please try again",
                    "We could not accept this form, perhaps because the page was open for a long time or cookies are \
                     blocked. Go back, reload the page and send the form again.",
                    false,
                ),
                None,
            ),
            Self::Throttled { shop, retry_after } => {
                let text = format!(
                    "For your security, please wait {} before trying again, or reset your password with \"Forgot your password?\".",
                    wait_text(retry_after)
                );
                too_many(
                    Base::shop(portal, &shop, "Too many attempts"),
                    "Too many attempts",
                    &text,
                    retry_after,
                )
            }
            Self::ResetsThrottled { shop, retry_after } => {
                let text = format!(
                    "Reset emails were asked for several times from here. Please check your inbox (and spam folder) for one, or wait {} before asking again.",
                    wait_text(retry_after)
                );
                too_many(
                    Base::shop(portal, &shop, "Too many requests"),
                    "Too many reset requests",
                    &text,
                    retry_after,
                )
            }
            Self::Busy(shop) => (
                StatusCode::SERVICE_UNAVAILABLE,
                notice(
                    base(&shop, "Busy"),
                    "We're busy right now",
                    "Many people are logging in at once. Please try again in a few seconds.",
                    false,
                ),
                Some(1),
            ),
            Self::SignInRefused { shop, reason } => (
                StatusCode::BAD_REQUEST,
                notice(
                    Base::shop(portal, &shop, "This sign-in link isn't valid"),
                    "This sign-in link isn't valid",
                    &format!(
                        "{reason} Go back to {}'s portal and sign in from there. If this keeps happening, contact {}:",
                        shop.name, shop.name
                    ),
                    true,
                ),
                None,
            ),
            Self::SignInExpired(shop) => (
                StatusCode::BAD_REQUEST,
                notice(
                    Base::shop(portal, &shop, "Please sign in again"),
                    "Please sign in again",
                    &format!(
                        "This sign-in took too long or was already completed. Go back to {}'s portal and sign in again.",
                        shop.name
                    ),
                    false,
                ),
                None,
            ),
            Self::BadRequest => (
                StatusCode::BAD_REQUEST,
                notice(
                    Base::plain("Please try again"),
                    "Please try again",
                    "The form arrived incomplete. Go back, reload the page and send it again.",
                    false,
                ),
                None,
            ),
            Self::Internal(cause) => {
                tracing::error!(%cause, "a customer page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    notice(
                        Base::plain("Something went wrong"),
                        "Something went wrong",
                        "Something went wrong on our side. Please try again in a moment.",
                        false,
                    ),
                    None,
                )
            }
        };
        let mut response = pages::render(portal, "pages/notice.html", status, &notice);
        if let Some(seconds) = retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
    }
}

/// A `429` page, and its `Retry-After` in whole seconds.
fn too_many(
    base: Base,
    heading: &str,
    text: &str,
    retry_after: Duration,
) -> (StatusCode, Notice, Option<u64>) {
    (StatusCode::TOO_MANY_REQUESTS, notice(base, heading, text, false), Some(retry_after.as_secs().max(1)))
}

fn notice(base: Base, heading: &str, text: &str, contact: bool) -> Notice {
    Notice { base, heading: heading.to_owned(), text: text.to_owned(), contact }
}
