//! The shop's settings that decide what the plugin may do: its subscription tier, time zone and locale.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};

/// The host's subscription tiers, in ascending order (contract §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubscriptionTier {
    Bronze,
    Silver,
    /// The tier the Customer Portal needs.
    Gold,
    Platinum,
}

impl SubscriptionTier {
    /// The lowest tier that includes the Customer Portal.
    pub const PORTAL_MINIMUM: Self = Self::Gold;

    /// The tier's name as the host spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bronze => "bronze",
            Self::Silver => "silver",
            Self::Gold => "gold",
            Self::Platinum => "platinum",
        }
    }

    /// Whether this tier includes the Customer Portal.
    pub fn includes_portal(self) -> bool {
        self >= Self::PORTAL_MINIMUM
    }
}

/// A tier name the host does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of bronze, silver, gold, platinum")]
pub struct UnknownTier;

impl FromStr for SubscriptionTier {
    type Err = UnknownTier;

    fn from_str(value: &str) -> Result<Self, UnknownTier> {
        match value {
            "bronze" => Ok(Self::Bronze),
            "silver" => Ok(Self::Silver),
            "gold" => Ok(Self::Gold),
            "platinum" => Ok(Self::Platinum),
            _ => Err(UnknownTier),
        }
    }
}

impl fmt::Display for SubscriptionTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IANA time zone such as `Australia/Brisbane`, used to show dates the way the shop reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(chrono_tz::Tz);

/// A time zone name that is not in the IANA database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an IANA time zone name such as Australia/Brisbane")]
pub struct UnknownTimeZone;

impl TimeZone {
    /// Parses an IANA name.
    pub fn parse(value: &str) -> Result<Self, UnknownTimeZone> {
        value.parse().map(Self).map_err(|_| UnknownTimeZone)
    }

    /// The zone for date arithmetic.
    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }

    /// The IANA name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// A moment as the shop reads it: "Monday 30 November 2026 at 8:15 PM AEST (Australia/Brisbane)".
    pub fn describe(self, at: DateTime<Utc>) -> String {
        let local = at.with_timezone(&self.0);
        format!("{} ({})", local.format("%A %-d %B %Y at %-I:%M %p %Z"), self.name())
    }

    /// A moment in a line that names several: "Tue 1 Dec 2026 at 8:15 PM AEST".
    pub fn moment(self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.0).format("%a %-d %b %Y at %-I:%M %p %Z").to_string()
    }

    pub fn utc() -> Self {
        Self(chrono_tz::UTC)
    }

    /// The shop's stored zone, or UTC when it cannot be read (a row older than the checks).
    pub fn or_utc(stored: &str) -> Self {
        Self::parse(stored).unwrap_or_else(|_| Self::utc())
    }
}

/// A BCP 47 language tag such as `en-AU`, kept for the `lang` of pages and the language of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

/// A value that is not shaped like a language tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a language tag such as en-AU")]
pub struct InvalidLocale;

impl Locale {
    /// Accepts a 2–3 letter language followed by `-`-separated subtags of 1–8 letters or digits.
    pub fn parse(value: &str) -> Result<Self, InvalidLocale> {
        let mut parts = value.split('-');
        let language = parts.next().unwrap_or_default();
        let language_ok =
            (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_alphabetic());
        let rest_ok = parts
            .all(|part| (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric()));
        if language_ok && rest_ok && value.len() <= 35 {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidLocale)
        }
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    #[test]
    fn deadlines_are_shown_in_the_shops_zone_with_the_zone_named() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T10:15:00Z").unwrap().to_utc();
        let brisbane = TimeZone::parse("Australia/Brisbane").unwrap();
        assert_eq!(brisbane.describe(at), "Monday 30 November 2026 at 8:15 PM AEST (Australia/Brisbane)");
        let berlin = TimeZone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.describe(at), "Monday 30 November 2026 at 11:15 AM CET (Europe/Berlin)");
        assert_eq!(TimeZone::or_utc("Mars/Olympus_Mons").name(), "UTC");
    }

    #[test]
    fn tiers_are_ordered_and_only_gold_and_above_include_the_portal() {
        let tiers: Vec<SubscriptionTier> =
            ["bronze", "silver", "gold", "platinum"].iter().map(|t| t.parse().unwrap()).collect();
        assert!(tiers.windows(2).all(|w| w[0] < w[1]));
        let with_portal: Vec<_> = tiers.iter().filter(|t| t.includes_portal()).collect();
        assert_eq!(with_portal, [&SubscriptionTier::Gold, &SubscriptionTier::Platinum]);
        assert!("Gold".parse::<SubscriptionTier>().is_err());
        assert!("diamond".parse::<SubscriptionTier>().is_err());
    }

    #[test]
    fn time_zones_come_from_the_iana_database() {
        assert_eq!(TimeZone::parse("Australia/Brisbane").unwrap().name(), "Australia/Brisbane");
        assert!(TimeZone::parse("Mars/Olympus_Mons").is_err());
        assert!(TimeZone::parse("").is_err());
    }

    #[test]
    fn locales_look_like_language_tags() {
        for good in ["en", "en-AU", "de-CH", "zh-Hant-TW", "es-419"] {
            assert!(Locale::parse(good).is_ok(), "{good} was refused");
        }
        for bad in ["", "e", "english-Australia", "en_AU", "en-", "<script>"] {
            assert!(Locale::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    proptest! {
        #[test]
        fn any_text_is_a_tier_or_an_error_and_a_tier_spells_itself(s in hostile::text()) {
            if let Ok(tier) = s.parse::<SubscriptionTier>() {
                prop_assert_eq!(tier.as_str(), s.as_str());
            }
        }

        #[test]
        fn any_text_is_a_time_zone_or_an_error_and_a_zone_round_trips(s in hostile::text()) {
            if let Ok(zone) = TimeZone::parse(&s) {
                prop_assert_eq!(TimeZone::parse(zone.name()), Ok(zone));
            }
        }

        #[test]
        fn any_text_is_a_locale_or_an_error_and_a_locale_is_short_ascii(s in hostile::text()) {
            if let Ok(locale) = Locale::parse(&s) {
                prop_assert_eq!(locale.as_str(), s.as_str());
                prop_assert!(s.len() <= 35 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
        }
    }
}
