//! Identifiers that arrive from the host. Each is parsed once at the edge, so the rest of the code can
//! rely on its shape (and on it being safe to log and to put in a URL path).

use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidId {
    /// Which identifier (for the message).
    pub what: &'static str,
}

/// `^[A-Za-z0-9_-]{1,64}$`: the host's alphabet for ids (contract §2 and §4).
fn is_host_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! host_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses a value in the host's id alphabet.
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                if is_host_id(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(InvalidId { what: $what })
                }
            }

            /// The id as the host spelled it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

/// Rows the portal keys by shop and customer (shops, customers, accounts, invitations) hold ids that
/// were parsed before they were stored: read back, they are taken as they are.
macro_rules! stored_id {
    ($($name:ident),*) => {$(
        impl $name {
            /// An id read back from the portal's own database, not checked again: it was parsed at
            /// the edge before it was stored. Never use this for a value from outside (a request, a
            /// message, a file): parse that with [`Self::parse`].
            pub fn from_stored(value: String) -> Self {
                debug_assert!(is_host_id(&value), "a stored id outside the host's alphabet: {value:?}");
                Self(value)
            }
        }
    )*};
}

host_id!(
    /// The host's id of a shop (a branch, on multi-branch accounts).
    ShopId,
    "shop_id"
);
host_id!(
    /// The host's id of a customer, unique within a shop.
    CustomerId,
    "customer id"
);
host_id!(
    /// The `webhook-id` header: one message, the same on every retry of it.
    WebhookId,
    "webhook-id"
);
host_id!(
    /// The host's id of one star-menu interaction, shared by a dialog and its resubmissions.
    InteractionId,
    "interaction_id"
);

stored_id!(ShopId, CustomerId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    #[test]
    fn the_contract_examples_are_accepted() {
        assert!(ShopId::parse("shop_8f2k").is_ok());
        assert!(WebhookId::parse("msg_p5jXN8AQM9LWM0D4loKWxJek").is_ok());
        assert!(CustomerId::parse("cus_456").is_ok());
    }

    #[test]
    fn empty_long_and_foreign_characters_are_refused() {
        assert!(ShopId::parse("").is_err());
        assert!(ShopId::parse(&"a".repeat(65)).is_err());
        assert!(ShopId::parse(&"a".repeat(64)).is_ok());
        for bad in ["a b", "a/b", "a.b", "ä", "a\n", "../x", "a%2F"] {
            assert!(ShopId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn every_id_in_the_alphabet_round_trips(s in "[A-Za-z0-9_-]{1,64}") {
            let id = WebhookId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn any_character_outside_the_alphabet_is_refused(
            prefix in "[A-Za-z0-9_-]{0,20}",
            bad in "[^A-Za-z0-9_-]",
            suffix in "[A-Za-z0-9_-]{0,20}",
        ) {
            let value = format!("{prefix}{bad}{suffix}");
            prop_assert!(ShopId::parse(&value).is_err());
        }

        #[test]
        fn any_text_is_an_id_or_an_error_and_an_id_is_safe_in_a_path(s in hostile::text()) {
            let parsed = [
                ShopId::parse(&s).map(|id| id.to_string()),
                CustomerId::parse(&s).map(|id| id.to_string()),
                WebhookId::parse(&s).map(|id| id.to_string()),
                InteractionId::parse(&s).map(|id| id.to_string()),
            ];
            for id in parsed.into_iter().flatten() {
                prop_assert_eq!(&id, &s);
                prop_assert!(!id.contains(['/', '.', '%', ' ']));
            }
        }
    }
}
