//! Why a message did not reach the customer, as a class staff can act on (contract §10's error
//! codes, and our own sender's verdicts).

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// The mail server or gateway refused the address or number when we sent it.
    Refused,
    /// It could not be handed over, and retries ran out.
    GaveUp,
    /// Not a valid or known mobile number (21211, 21614, 30005).
    NotAMobile,
    /// A landline, or a carrier that cannot be reached (30006).
    Landline,
    /// The carrier or the recipient blocked it (30007, 21610).
    Blocked,
    /// The phone was switched off or out of coverage (30003).
    PhoneUnreachable,
    /// The gateway did not say why (30008, or a code we do not know).
    Unknown,
}

const ALL: [DeliveryFailure; 7] = [
    DeliveryFailure::Refused,
    DeliveryFailure::GaveUp,
    DeliveryFailure::NotAMobile,
    DeliveryFailure::Landline,
    DeliveryFailure::Blocked,
    DeliveryFailure::PhoneUnreachable,
    DeliveryFailure::Unknown,
];

impl DeliveryFailure {
    /// The class of a final `undelivered`/`failed` SMS report with this `ErrorCode`.
    pub fn from_sms_error(code: Option<&str>) -> Self {
        match code.map(str::trim) {
            Some("21211" | "21614" | "30005") => Self::NotAMobile,
            Some("30006") => Self::Landline,
            Some("30007" | "21610") => Self::Blocked,
            Some("30003") => Self::PhoneUnreachable,
            _ => Self::Unknown,
        }
    }

    /// As stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::GaveUp => "gave_up",
            Self::NotAMobile => "not_a_mobile",
            Self::Landline => "landline",
            Self::Blocked => "blocked",
            Self::PhoneUnreachable => "phone_unreachable",
            Self::Unknown => "unknown",
        }
    }

    /// Parses the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        ALL.into_iter().find(|f| f.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_error_codes_fall_into_their_classes() {
        let cases = [
            ("21211", DeliveryFailure::NotAMobile),
            ("21614", DeliveryFailure::NotAMobile),
            ("30005", DeliveryFailure::NotAMobile),
            ("30006", DeliveryFailure::Landline),
            ("30007", DeliveryFailure::Blocked),
            ("21610", DeliveryFailure::Blocked),
            ("30003", DeliveryFailure::PhoneUnreachable),
            ("30008", DeliveryFailure::Unknown),
            ("99999", DeliveryFailure::Unknown),
        ];
        for (code, class) in cases {
            assert_eq!(DeliveryFailure::from_sms_error(Some(code)), class, "{code}");
        }
        assert_eq!(DeliveryFailure::from_sms_error(None), DeliveryFailure::Unknown);
        for class in ALL {
            assert_eq!(DeliveryFailure::parse(class.as_str()), Some(class));
        }
    }
}
