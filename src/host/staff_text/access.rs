//! The texts of the "Customer Portal access" action (contract §9): the status dialog with the
//! choices that fit, and what each choice did or why it was not done.

use super::{Audience, by, capitalised, status};
use crate::{
    access::{Choice, Done, NotDone, Overview, Standing},
    accounts::reset::RESETS_PER_HOUR,
    host::dialog::{ActionResponse, Dialog, DialogField, DialogOption, Level, OpenDialog},
};

/// The dialog's title (as in the manifest's action label).
pub const TITLE: &str = "Customer Portal access";

/// A customer never invited and without an account.
pub fn no_portal_account(audience: &Audience<'_>) -> ActionResponse {
    ActionResponse::message(
        Level::Info,
        "no_portal_account",
        format!(
            "{} has never been invited to the Customer Portal and has no login yet. To invite them, use \
             \"Send Customer Portal Invitation\" in the star menu.",
            capitalised(&audience.name())
        ),
    )
}

/// The status, with the choices that fit it; a message when nothing can be offered.
pub fn overview(overview: &Overview, audience: &Audience<'_>) -> ActionResponse {
    let standing = &overview.standing;
    if standing.is_blank() {
        return no_portal_account(audience);
    }
    let mut text = status::status(standing, audience);
    if overview.resets_capped {
        text.push_str(&format!(
            " A password-reset link was already emailed {RESETS_PER_HOUR} times in the last hour, so no more can \
             be sent now."
        ));
    }
    if overview.choices.is_empty() {
        return ActionResponse::message(Level::Info, "portal_status", text);
    }
    let mut fields = vec![DialogField::text("status", text)];
    if !standing.history.is_empty() {
        fields.push(DialogField::text("history", status::history(&standing.history, audience)));
    }
    let options = overview.choices.iter().map(|choice| option(*choice, standing, audience)).collect();
    fields.push(DialogField::radio("action", "What would you like to do?", options));
    ActionResponse::OpenDialog(OpenDialog {
        dialog: Dialog {
            title: TITLE.into(),
            submit_label: "Do it".into(),
            cancel_label: "Close".into(),
            fields,
        },
    })
}

fn option(choice: Choice, standing: &Standing, audience: &Audience<'_>) -> DialogOption {
    let name = audience.name();
    let label = match choice {
        Choice::PasswordReset => match audience.customer.and_then(|c| c.email.as_deref()) {
            Some(email) => format!("Email a password-reset link to {email}"),
            None => "Email a password-reset link".into(),
        },
        Choice::EndSessions => format!("Sign {name} out of the Customer Portal on every device"),
        Choice::CancelInvitation => {
            let how = standing.live_invitation().map(|i| format!(" {}", by(i.channel))).unwrap_or_default();
            format!(
                "Cancel the invitation sent{how}: its link stops working, and you can then send a new one"
            )
        }
    };
    DialogOption { value: choice.as_str().into(), label, disabled: None }
}

/// What a choice did.
pub fn done(done: &Done, audience: &Audience<'_>) -> ActionResponse {
    let name = capitalised(&audience.name());
    match done {
        Done::ResetSent { to, expires_at } => ActionResponse::close(
            Level::Success,
            "password_reset_sent",
            format!(
                "A password-reset link is being emailed to {to}. It works until {}. {name} still logs in \
                 with {to} as the username.",
                audience.zone().moment(*expires_at)
            ),
        ),
        Done::SessionsEnded { sessions } => ActionResponse::close(
            Level::Success,
            "sessions_ended",
            format!(
                "{name} was signed out of the Customer Portal on every device ({}), and will need to log in \
                 again.",
                match sessions {
                    0 => "no session was still open".to_owned(),
                    1 => "1 session ended".to_owned(),
                    n => format!("{n} sessions ended"),
                }
            ),
        ),
        Done::InvitationCancelled { channel } => ActionResponse::close(
            Level::Success,
            "invitation_cancelled",
            format!(
                "The invitation sent {} was cancelled: its link no longer works. You can now send a new \
                 invitation with \"Send Customer Portal Invitation\".",
                by(*channel)
            ),
        ),
    }
}

/// Why a choice was not done, with where the customer stands now.
pub fn not_done(not_done: &NotDone, standing: &Standing, audience: &Audience<'_>) -> ActionResponse {
    let name = audience.name();
    let now = status::status(standing, audience);
    let (level, code, text) = match not_done {
        NotDone::NoAccount => return close(no_portal_account(audience)),
        NotDone::EmailMissing => (
            Level::Error,
            "customer_email_missing",
            "This customer has no email address, so a reset link has nowhere to go. Add the email address \
             to the profile first."
                .to_owned(),
        ),
        NotDone::NoPassword => (
            Level::Info,
            "portal_status",
            format!("Nothing was sent: {name} hasn't set a password yet, so there is none to reset. {now}"),
        ),
        NotDone::ResetsCapped => (
            Level::Info,
            "portal_status",
            format!(
                "Nothing was sent: a password-reset link was already emailed {RESETS_PER_HOUR} times in the \
                 last hour. Ask {name} to check their inbox and spam folder, or try again later."
            ),
        ),
        NotDone::NothingToCancel => {
            (Level::Info, "portal_status", format!("There is no invitation to cancel. {now}"))
        }
        NotDone::LinkUsed => (
            Level::Info,
            "portal_status",
            format!("The invitation can't be cancelled: {name} already used its link. {now}"),
        ),
    };
    ActionResponse::close(level, code, text)
}

/// No choice, or one the dialog never offered.
pub fn invalid_choice() -> ActionResponse {
    ActionResponse::field_error("action", "portal_status", "Choose one of the options.".into())
}

/// A message closes the dialog once it was submitted: there is nothing left to choose.
pub fn close(response: ActionResponse) -> ActionResponse {
    match response {
        ActionResponse::Message(m) => ActionResponse::Close(m),
        other => other,
    }
}
