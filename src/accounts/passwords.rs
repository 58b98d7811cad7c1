//! Passwords: the rules a new one must meet (hashing them is [`super::hasher`]).
//!
//! The rules follow current guidance (NIST SP 800-63B): a minimum length, a generous maximum, any
//! Unicode (normalised to NFC, so the same password typed on two keyboards matches) and spaces, no
//! composition rules; refused when it is a common password, or contains the email's local part or the
//! shop's name. Each refusal says why.

use unicode_normalization::UnicodeNormalization;

/// The longest password accepted, in characters.
pub const MAX_LENGTH: usize = 128;

/// Why a new password was refused; the text is shown under the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    /// Too short.
    #[error("Use at least {0} characters.")]
    TooShort(usize),
    /// Too long.
    #[error("Use at most 128 characters.")]
    TooLong,
    /// One of the passwords attackers try first.
    #[error("This is one of the most common passwords, so it would be guessed quickly. Choose another.")]
    Common,
    /// Too predictable (repeats, sequences, keyboard patterns).
    #[error(
        "This password is too easy to guess (repeated or sequential characters). Add more words or characters."
    )]
    Guessable,
    /// Contains the start of the email address.
    #[error("Don't use your email address in your password.")]
    ContainsEmail,
    /// Contains the shop's name.
    #[error("Don't use the shop's name in your password.")]
    ContainsShopName,
    /// The confirmation differs.
    #[error("The two passwords don't match. Type the same password twice.")]
    Mismatch,
}

/// The password normalised to NFC, as it is hashed and compared.
pub fn normalise(password: &str) -> String {
    password.nfc().collect()
}

/// Checks a new password and its confirmation; returns the normalised password to hash.
pub fn check_new(
    password: &str,
    confirmation: &str,
    min_length: usize,
    email_local_part: &str,
    shop_name: &str,
) -> Result<String, PasswordProblem> {
    let password = normalise(password);
    let length = password.chars().count();
    if length < min_length {
        return Err(PasswordProblem::TooShort(min_length));
    }
    if length > MAX_LENGTH {
        return Err(PasswordProblem::TooLong);
    }
    if normalise(confirmation) != password {
        return Err(PasswordProblem::Mismatch);
    }
    let lower = password.to_lowercase();
    let local = email_local_part.to_lowercase();
    if local.chars().count() >= 3 && lower.contains(&local) {
        return Err(PasswordProblem::ContainsEmail);
    }
    let shop = shop_name.to_lowercase();
    if shop.chars().count() >= 3 && lower.contains(&shop) {
        return Err(PasswordProblem::ContainsShopName);
    }
    let estimate = zxcvbn::zxcvbn(&password, &[]);
    // zxcvbn ranks the 30 000 most common passwords; its dictionary type is not exported, so the
    // dictionary is recognised by its name.
    let whole_password_is_common = estimate.sequence().iter().any(|m| {
        m.i == 0
            && m.j + 1 == length
            && matches!(&m.pattern, zxcvbn::matching::patterns::MatchPattern::Dictionary(d)
                if format!("{:?}", d.dictionary_name) == "Passwords")
    });
    if whole_password_is_common {
        return Err(PasswordProblem::Common);
    }
    if estimate.score() == zxcvbn::Score::Zero {
        return Err(PasswordProblem::Guessable);
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str) -> Result<String, PasswordProblem> {
        check_new(password, password, 8, "jana.kowalski", "Southside Auto Care")
    }

    #[test]
    fn long_unicode_passphrases_with_spaces_are_welcome() {
        assert!(check("correct horse battery staple").is_ok());
        assert!(check("Ünïcödé ist erlaubt 🚗").is_ok());
        assert!(check("tyres-and-brakes-2026").is_ok());
    }

    #[test]
    fn every_refusal_has_its_reason() {
        assert_eq!(check("short1!"), Err(PasswordProblem::TooShort(8)));
        assert_eq!(check(&"a b".repeat(43)), Err(PasswordProblem::TooLong));
        assert_eq!(check("password1"), Err(PasswordProblem::Common));
        assert_eq!(check("qwertyuiop"), Err(PasswordProblem::Common));
        assert_eq!(check("iloveyou"), Err(PasswordProblem::Common));
        assert_eq!(check("aaaaaaaaaa"), Err(PasswordProblem::Guessable));
        assert_eq!(check("my Jana.Kowalski pass"), Err(PasswordProblem::ContainsEmail));
        assert_eq!(check("southside auto care rocks"), Err(PasswordProblem::ContainsShopName));
        assert_eq!(
            check_new("long enough pass", "long enough pas", 8, "j", "s"),
            Err(PasswordProblem::Mismatch)
        );
        assert_eq!(
            check_new("twelve chars", "twelve chars", 16, "j", "s"),
            Err(PasswordProblem::TooShort(16))
        );
    }

    #[test]
    fn composed_and_decomposed_forms_are_the_same_password() {
        let composed = "caf\u{e9} au lait x";
        let decomposed = "cafe\u{301} au lait x";
        assert_eq!(check_new(composed, decomposed, 8, "j", "s"), Ok(normalise(composed)));
    }
}
