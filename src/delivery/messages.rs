//! What the messages say: the template contexts, and rendering them into an email or an SMS. Dates
//! are shown in the shop's time zone, with the zone named ([`crate::domain::TimeZone::describe`]).

use serde::Serialize;

use super::email::Email;
use crate::templates::{TemplateError, Templates};

/// The invitation email's templates.
pub const INVITATION_EMAIL: [&str; 3] =
    ["email/invitation/subject.txt", "email/invitation/body.txt", "email/invitation/body.html"];
/// The password-reset email's templates.
pub const RESET_EMAIL: [&str; 3] =
    ["email/password_reset/subject.txt", "email/password_reset/body.txt", "email/password_reset/body.html"];
/// The "your password was changed" email's templates.
pub const CHANGED_EMAIL: [&str; 3] = [
    "email/password_changed/subject.txt",
    "email/password_changed/body.txt",
    "email/password_changed/body.html",
];
/// The invitation SMS's template.
pub const INVITATION_SMS: &str = "sms/invitation.txt";

/// Everything the invitation templates may use.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationContext {
    /// The shop's language tag, for `<html lang>`.
    pub lang: String,
    pub shop_name: String,
    /// The customer's first name, if known.
    pub first_name: Option<String>,
    /// Their username (their email).
    pub username: String,
    pub setup_url: String,
    pub login_url: String,
    /// When the set-up link stops working, in the shop's time zone.
    pub expires_at: String,
    /// The shop's email, for questions.
    pub shop_email: Option<String>,
    /// The shop's phone, for questions.
    pub shop_phone: Option<String>,
}

impl InvitationContext {
    /// Sample data, to check the templates at start-up.
    pub fn sample() -> Self {
        Self {
            lang: "en-AU".into(),
            shop_name: "Southside Auto Care".into(),
            first_name: Some("Jana".into()),
            username: "jana@example.com".into(),
            setup_url: "https://portal.example.com/setup/sample".into(),
            login_url: "https://portal.example.com/p/shop/login".into(),
            expires_at: "Monday 30 November 2026 at 8:15 PM AEST (Australia/Brisbane)".into(),
            shop_email: Some("service@southside.example".into()),
            shop_phone: Some("+61 7 3000 0000".into()),
        }
    }
}

/// What the password-reset email may use.
#[derive(Debug, Clone, Serialize)]
pub struct ResetContext {
    /// The shop's language tag.
    pub lang: String,
    pub shop_name: String,
    /// The customer's first name, if known.
    pub first_name: Option<String>,
    pub username: String,
    pub reset_url: String,
    /// When it stops working, in the shop's time zone.
    pub expires_at: String,
    pub shop_email: Option<String>,
    pub shop_phone: Option<String>,
}

/// What the "password changed" email may use.
#[derive(Debug, Clone, Serialize)]
pub struct ChangedContext {
    /// The shop's language tag.
    pub lang: String,
    pub shop_name: String,
    /// The customer's first name, if known.
    pub first_name: Option<String>,
    pub username: String,
    /// When the password changed, in the shop's time zone.
    pub changed_at: String,
    /// The login page (with its "forgot password" link).
    pub login_url: String,
    pub shop_email: Option<String>,
    pub shop_phone: Option<String>,
}

/// Who an email is to and from.
pub struct Envelope<'a> {
    pub to: &'a str,
    /// The customer's first name.
    pub to_name: Option<String>,
    /// The shop's name, shown as the sender.
    pub shop_name: &'a str,
    /// The shop's address, for replies.
    pub reply_to: Option<String>,
}

/// Renders the email whose templates are `names` (subject, text, HTML).
pub fn email(
    templates: &Templates,
    names: [&str; 3],
    context: &impl Serialize,
    envelope: Envelope<'_>,
) -> Result<Email, TemplateError> {
    let [subject, text, html] = names;
    Ok(Email {
        to: envelope.to.to_owned(),
        to_name: envelope.to_name,
        from_name: envelope.shop_name.to_owned(),
        reply_to: envelope.reply_to,
        subject: one_line(&templates.render(subject, context)?),
        text: templates.render(text, context)?,
        html: templates.render(html, context)?,
    })
}

/// Renders the invitation email to `to`.
pub fn invitation_email(
    templates: &Templates,
    context: &InvitationContext,
    to: &str,
    reply_to: Option<String>,
) -> Result<Email, TemplateError> {
    let envelope =
        Envelope { to, to_name: context.first_name.clone(), shop_name: &context.shop_name, reply_to };
    email(templates, INVITATION_EMAIL, context, envelope)
}

/// Renders the invitation SMS.
pub fn invitation_sms(templates: &Templates, context: &InvitationContext) -> Result<String, TemplateError> {
    Ok(templates.render(INVITATION_SMS, context)?.trim().to_owned())
}

/// Checks every message template against its sample data.
pub fn check_templates(templates: &Templates) -> Result<(), TemplateError> {
    let sample = InvitationContext::sample();
    templates.check(&INVITATION_EMAIL, &sample)?;
    templates.check(&[INVITATION_SMS], &sample)?;
    let reset = ResetContext {
        lang: sample.lang.clone(),
        shop_name: sample.shop_name.clone(),
        first_name: sample.first_name.clone(),
        username: sample.username.clone(),
        reset_url: "https://portal.example.com/p/shop/reset/sample".into(),
        expires_at: sample.expires_at.clone(),
        shop_email: sample.shop_email.clone(),
        shop_phone: sample.shop_phone.clone(),
    };
    templates.check(&RESET_EMAIL, &reset)?;
    let changed = ChangedContext {
        lang: reset.lang,
        shop_name: reset.shop_name,
        first_name: reset.first_name,
        username: reset.username,
        changed_at: reset.expires_at,
        login_url: sample.login_url,
        shop_email: reset.shop_email,
        shop_phone: reset.shop_phone,
    };
    templates.check(&CHANGED_EMAIL, &changed)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The GSM-7 basic character set: an SMS of these characters fits 160 per segment.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Characters of the GSM-7 extension table: they count twice.
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{c}";

/// How many SMS segments `text` takes: `(gsm7, segments)`. Non-GSM-7 text is sent as UCS-2, 70
/// characters a segment (67 when split).
pub fn sms_segments(text: &str) -> (bool, usize) {
    let gsm7 = text.chars().all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENDED.contains(c));
    if gsm7 {
        let units: usize = text.chars().map(|c| if GSM7_EXTENDED.contains(c) { 2 } else { 1 }).sum();
        (true, if units <= 160 { 1 } else { units.div_ceil(153) })
    } else {
        let units: usize = text.chars().map(char::len_utf16).sum();
        (false, if units <= 70 { 1 } else { units.div_ceil(67) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_segments_are_counted_by_encoding() {
        assert_eq!(sms_segments(&"a".repeat(160)), (true, 1));
        assert_eq!(sms_segments(&"a".repeat(161)), (true, 2));
        assert_eq!(sms_segments(&"[".repeat(80)), (true, 1));
        assert_eq!(sms_segments(&"[".repeat(81)), (true, 2));
        assert_eq!(sms_segments("Łódź Motors"), (false, 1));
        assert_eq!(sms_segments(&"ł".repeat(71)), (false, 2));
    }

    #[test]
    fn the_invitation_sms_fits_one_segment_for_a_30_character_shop_name() {
        let templates = Templates::load(None).unwrap();
        let shop_name = "Southside Auto Care & Tyres Co";
        assert_eq!(shop_name.chars().count(), 30);
        let token = crate::tokens::RawToken::generate();
        let public = url::Url::parse("https://portal.example.com").unwrap();
        let context = InvitationContext {
            shop_name: shop_name.into(),
            setup_url: crate::links::setup(&public, "shop_8f2k", &token),
            ..InvitationContext::sample()
        };
        let sms = invitation_sms(&templates, &context).unwrap();
        assert!(sms.starts_with(shop_name), "the shop comes first: {sms}");
        assert!(sms.contains(&context.setup_url));
        assert_eq!(sms_segments(&sms), (true, 1), "{} characters: {sms}", sms.chars().count());
    }

    #[test]
    fn the_invitation_email_has_exactly_the_two_links_and_the_details() {
        let templates = Templates::load(None).unwrap();
        let context = InvitationContext::sample();
        let email = invitation_email(&templates, &context, "jana@example.com", None).unwrap();
        assert_eq!(email.subject, "Southside Auto Care: set up your Customer Portal login");
        let html = &email.html;
        for part in [&email.text, html] {
            let setup = part.find(&context.setup_url).expect("set-up link");
            let login = part.find(&context.login_url).expect("login link");
            assert!(setup < login, "the set-up link comes first");
            assert!(part.contains(&context.expires_at) && part.contains(&context.username));
            assert!(part.contains("keep this email"));
        }
        assert_eq!(email.html.matches("href=").count(), 2);
        assert_eq!(email.text.matches("https://").count(), 2);
    }
}
