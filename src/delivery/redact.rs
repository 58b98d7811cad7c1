//! Error texts from a mail server or an SMS gateway often echo the address or number they refused
//! ("550 5.1.1 <jana@example.com>: user unknown", "The 'To' number +61412345678 is not valid").
//! Those texts end up in log lines, in the outbox's `last_error` and in the invitation's failure, which
//! outlive the customer's consent: they keep the code and the class of the error, and lose the
//! address and the number.

/// `text` with every email address replaced by `[address]` and every run of six or more digits
/// (phone numbers, with their spaces, dashes, dots and brackets) by `[number]`.
pub fn redact(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = address_at(&chars, i) {
            out.push_str("[address]");
            i = end;
        } else if let Some(end) = number_at(&chars, i) {
            out.push_str("[number]");
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn is_local(c: char) -> bool {
    c.is_alphanumeric() || "._%+-'".contains(c)
}

fn is_domain(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '-'
}

/// If an address starts at `start` (a local part, `@`, a domain), where it ends.
fn address_at(chars: &[char], start: usize) -> Option<usize> {
    if start > 0 && is_local(chars[start - 1]) {
        return None;
    }
    let mut i = start;
    while i < chars.len() && is_local(chars[i]) {
        i += 1;
    }
    if i == start || chars.get(i) != Some(&'@') {
        return None;
    }
    let domain_start = i + 1;
    let mut end = domain_start;
    while end < chars.len() && is_domain(chars[end]) {
        end += 1;
    }
    (end > domain_start).then_some(end)
}

/// If a phone-like number starts at `start`, where it ends.
fn number_at(chars: &[char], start: usize) -> Option<usize> {
    let first = chars[start];
    if !(first == '+' || first.is_ascii_digit()) || (start > 0 && chars[start - 1].is_ascii_digit()) {
        return None;
    }
    let mut digits = 0;
    let mut end = start;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            digits += 1;
            end = i + 1;
        } else if !(c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || (c == '+' && i == start)) {
            break;
        }
        i += 1;
    }
    (digits >= 6).then_some(end)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn addresses_and_numbers_go_codes_and_words_stay() {
        assert_eq!(
            redact("permanent error (550): 5.1.1 <jana.k+car@example.com>: user unknown"),
            "permanent error (550): 5.1.1 <[address]>: user unknown"
        );
        assert_eq!(
            redact("The 'To' number +61 412 345-678 is not a valid phone number. (21211)"),
            "The 'To' number [number] is not a valid phone number. (21211)"
        );
        assert_eq!(
            redact("SMS gateway answered 429 Too Many Requests"),
            "SMS gateway answered 429 Too Many Requests"
        );
        assert_eq!(redact("a@b"), "[address]");
        assert_eq!(redact("@ alone, x@ and @y"), "@ alone, x@ and @y");
    }

    proptest! {
        #[test]
        fn no_address_or_long_number_survives(prefix in "[a-z ]{0,10}", local in "[a-z0-9.]{1,12}",
                                              domain in "[a-z]{1,8}\\.[a-z]{2,3}", digits in "[0-9]{6,15}",
                                              noise in ".{0,40}") {
            let text = format!("{prefix}<{local}@{domain}> {noise} +{digits}");
            let clean = redact(&text);
            let address = format!("{local}@{domain}");
            prop_assert!(!clean.contains(&address), "{}", clean);
            prop_assert!(!clean.contains(&digits), "{}", clean);
        }

        #[test]
        fn any_text_is_handled(text in "\\PC{0,200}") {
            let _ = redact(&text);
        }
    }
}
