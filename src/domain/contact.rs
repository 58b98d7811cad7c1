//! Contact details from shop and customer snapshots: email addresses, E.164 mobile numbers and free
//! text such as names. Each constructor refuses what the rest of the service must never see (control
//! characters, absurd lengths), so templates, logs and the database only hold well-formed values.

use std::fmt;

/// Why a contact detail was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidContact {
    /// Not an email address we could deliver to.
    #[error("is not a valid email address")]
    Email,
    /// Not an E.164 number (`+` then 2 to 15 digits, no leading zero).
    #[error("is not an E.164 number such as +61412345678")]
    Mobile,
    /// Free text that is empty, too long or has control characters.
    #[error("must be 1 to {max} characters without control characters")]
    Text {
        /// The longest accepted length, in characters.
        max: usize,
    },
}

/// An email address as the host sent it (trimmed), with a normalised form for comparisons.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address: one `@`, a local part of at most 64 bytes, a domain of dot-separated labels
    /// (letters, digits, hyphens, or any non-ASCII for internationalised domains), 254 bytes in all.
    pub fn parse(value: &str) -> Result<Self, InvalidContact> {
        let value = value.trim();
        let (local, domain) = value.rsplit_once('@').ok_or(InvalidContact::Email)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| !c.is_control() && !c.is_whitespace() && !"@<>()[]\\,;:\"".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-' || !c.is_ascii())
            });
        if local_ok && domain_ok && value.len() <= 254 {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidContact::Email)
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used to compare usernames: lower case. Mail providers treat local parts
    /// case-insensitively in practice, and customers type them either way.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }

    /// The part before the `@` (passwords must not contain it).
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(local, _)| local)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    // Personal data: keep it out of debug output and therefore out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(..)")
    }
}

/// A mobile number in E.164 form, e.g. `+61412345678`.
#[derive(Clone, PartialEq, Eq)]
pub struct E164Number(String);

impl E164Number {
    /// Parses `+` followed by 2 to 15 digits, the first not zero.
    pub fn parse(value: &str) -> Result<Self, InvalidContact> {
        let digits = value.strip_prefix('+').ok_or(InvalidContact::Mobile)?;
        let ok = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok { Ok(Self(value.to_owned())) } else { Err(InvalidContact::Mobile) }
    }

    /// The number in E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("E164Number(..)")
    }
}

/// Free text from the host, such as a name or a phone number for display.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    /// Trims the value and accepts 1 to `max` characters without control characters.
    pub fn parse(value: &str, max: usize) -> Result<Self, InvalidContact> {
        let value = value.trim();
        let count = value.chars().count();
        if count == 0 || count > max || value.chars().any(char::is_control) {
            return Err(InvalidContact::Text { max });
        }
        Ok(Self(value.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({} chars)", self.0.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    #[test]
    fn ordinary_addresses_are_accepted_and_normalised() {
        let email = EmailAddress::parse("  Jana.Kowalski+car@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Jana.Kowalski+car@Example.COM");
        assert_eq!(email.normalized(), "jana.kowalski+car@example.com");
        assert_eq!(email.local_part(), "Jana.Kowalski+car");
        assert!(EmailAddress::parse("zoë@bücher.example").is_ok());
    }

    #[test]
    fn broken_addresses_are_refused() {
        for bad in [
            "",
            "jana",
            "@example.com",
            "jana@",
            "jana@example",
            "jana@@example.com",
            "ja na@example.com",
            "jana@exa mple.com",
            "jana@-example.com",
            "jana@example..com",
            ".jana@example.com",
            "jana\n@example.com",
            "<jana@example.com>",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
    }

    #[test]
    fn e164_numbers_need_a_plus_and_digits() {
        assert!(E164Number::parse("+61412345678").is_ok());
        for bad in ["61412345678", "+0412345678", "+6141234567890123", "+61 412 345 678", "+", "+1"] {
            assert!(E164Number::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(Text::parse("  Jana ", 10).unwrap().as_str(), "Jana");
        assert!(Text::parse("   ", 10).is_err());
        assert!(Text::parse("abcdefghijk", 10).is_err());
        assert!(Text::parse("a\u{7}b", 10).is_err());
        assert!(Text::parse("Łódź Motors ✓", 20).is_ok());
    }

    #[test]
    fn debug_output_hides_personal_data() {
        let email = EmailAddress::parse("jana@example.com").unwrap();
        let mobile = E164Number::parse("+61412345678").unwrap();
        let name = Text::parse("Jana", 10).unwrap();
        let shown = format!("{email:?} {mobile:?} {name:?}");
        assert!(!shown.contains("jana") && !shown.contains("412345") && !shown.contains("Jana"));
    }

    proptest! {
        #[test]
        fn generated_addresses_round_trip(
            local in "[a-zA-Z0-9][a-zA-Z0-9._+-]{0,30}[a-zA-Z0-9]",
            domain in "[a-z0-9]{1,20}\\.[a-z]{2,6}",
        ) {
            prop_assume!(!local.contains(".."));
            let text = format!("{local}@{domain}");
            let email = EmailAddress::parse(&text).unwrap();
            prop_assert_eq!(email.as_str(), text.as_str());
            prop_assert_eq!(email.normalized(), text.to_lowercase());
        }

        #[test]
        fn e164_accepts_exactly_plus_and_digits(digits in "[1-9][0-9]{1,14}") {
            let number = format!("+{digits}");
            prop_assert!(E164Number::parse(&number).is_ok());
            prop_assert!(E164Number::parse(&digits).is_err());
        }

        #[test]
        fn text_never_keeps_control_characters(s in "[a-z]{1,5}[\\x00-\\x1f][a-z]{1,5}") {
            prop_assert!(Text::parse(&s, 100).is_err());
        }

        #[test]
        fn any_text_is_an_address_or_an_error_and_an_address_is_well_formed(s in hostile::text()) {
            if let Ok(email) = EmailAddress::parse(&s) {
                prop_assert_eq!(email.as_str(), s.trim());
                prop_assert!(email.as_str().len() <= 254);
                prop_assert_eq!(email.as_str().matches('@').count(), 1);
                prop_assert!(!email.as_str().chars().any(char::is_control));
                prop_assert!(email.local_part().len() <= 64);
            }
        }

        #[test]
        fn any_text_is_a_mobile_number_or_an_error(s in hostile::text()) {
            if let Ok(number) = E164Number::parse(&s) {
                prop_assert_eq!(number.as_str(), s.as_str());
                prop_assert!((3..=16).contains(&s.len()) && s[1..].bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn accepted_text_is_trimmed_bounded_and_printable(s in hostile::text(), max in 0usize..300) {
            if let Ok(text) = Text::parse(&s, max) {
                prop_assert_eq!(text.as_str(), s.trim());
                prop_assert!((1..=max).contains(&text.as_str().chars().count()));
                prop_assert!(!text.as_str().chars().any(char::is_control));
            }
        }
    }
}
