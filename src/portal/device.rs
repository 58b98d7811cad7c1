//! Device cookies, as OWASP's guidance on account lockout describes them: a browser that logs in to
//! an account gets a long-lived cookie with a random id, signed with the service's key and bound to
//! the shop and the username. Its later attempts on that account are throttled on a counter of their
//! own, so a stranger's wrong guesses, which make everyone else wait, never keep the owner out of a
//! browser they have logged in from before.
//!
//! The cookie proves only that this browser logged in to the account once; it is no credential, so
//! it does not weaken the password check, only which counter an attempt is judged by. One cookie
//! holds up to [`ENTRIES`] accounts (a family's tablet, or one person at two shops), latest first.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::cookies::{self, CookieNames};

/// How long a browser is remembered after its latest login.
pub const LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Accounts one cookie remembers at most.
pub const ENTRIES: usize = 4;
/// Random bytes of a device id.
const ID_BYTES: usize = 16;
/// Characters of an id and of a signature, in unpadded base64url.
const ID_CHARS: usize = 22;
const MAC_CHARS: usize = 43;

/// The device id this browser holds for `username` in `shop_id`, if its cookie has a correctly
/// signed entry for them.
pub fn recognise(
    request: &poem::Request,
    names: CookieNames,
    key: &[u8],
    shop_id: &str,
    username: &str,
) -> Option<String> {
    entries(request, names)
        .find(|(id, mac)| verify(key, shop_id, username, id, mac))
        .map(|(id, _)| id.to_owned())
}

/// The `Set-Cookie` value after a successful login: a fresh entry for this account first, then the
/// browser's entries for other accounts, as many as fit.
pub fn remember(
    request: &poem::Request,
    names: CookieNames,
    key: &[u8],
    shop_id: &str,
    username: &str,
) -> String {
    let id = URL_SAFE_NO_PAD.encode(crate::random::bytes::<ID_BYTES>());
    let fresh = format!("{id}.{}", sign(key, shop_id, username, &id));
    let others = entries(request, names)
        .filter(|(id, mac)| !verify(key, shop_id, username, id, mac))
        .map(|(id, mac)| format!("{id}.{mac}"));
    let value: Vec<String> = std::iter::once(fresh).chain(others).take(ENTRIES).collect();
    names.set(names.device(), &value.join("~"), LIFETIME)
}

/// The well-formed entries of the browser's device cookie: (id, signature).
fn entries(request: &poem::Request, names: CookieNames) -> impl Iterator<Item = (&str, &str)> {
    cookies::read_raw_cookie(request, names.device())
        .unwrap_or_default()
        .split('~')
        .filter_map(|entry| entry.split_once('.'))
        .filter(|(id, mac)| id.len() == ID_CHARS && mac.len() == MAC_CHARS && base64url(id) && base64url(mac))
        .take(ENTRIES)
}

fn base64url(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn sign(key: &[u8], shop_id: &str, username: &str, id: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(b"device|");
    for part in [shop_id, username, id] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn verify(key: &[u8], shop_id: &str, username: &str, id: &str, mac: &str) -> bool {
    let expected = sign(key, shop_id, username, id);
    expected.len() == mac.len() && bool::from(expected.as_bytes().ct_eq(mac.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 64] = [7u8; 64];
    const NAMES: CookieNames = CookieNames { secure: true };

    fn browser_with(set_cookie: Option<&str>) -> poem::Request {
        let mut builder = poem::Request::builder();
        if let Some(set_cookie) = set_cookie {
            let pair = set_cookie.split(';').next().unwrap();
            builder = builder.header("cookie", format!("other=1; {pair}"));
        }
        builder.finish()
    }

    #[test]
    fn the_cookie_is_host_prefixed_long_lived_httponly_and_lax() {
        let cookie = remember(&browser_with(None), NAMES, &KEY, "shop_1", "jana@example.com");
        assert!(cookie.starts_with("__Host-portal_device="), "{cookie}");
        for attribute in ["; Max-Age=31536000", "; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
            assert!(cookie.contains(attribute), "{attribute} missing from {cookie}");
        }
        assert!(!cookie.contains("jana"), "the cookie does not name the account");
    }

    #[test]
    fn a_browser_is_recognised_only_for_the_account_it_logged_in_to() {
        let cookie = remember(&browser_with(None), NAMES, &KEY, "shop_1", "jana@example.com");
        let browser = browser_with(Some(&cookie));
        let id = recognise(&browser, NAMES, &KEY, "shop_1", "jana@example.com").expect("recognised");
        assert_eq!(id.len(), ID_CHARS);
        assert_eq!(recognise(&browser, NAMES, &KEY, "shop_1", "ola@example.com"), None);
        assert_eq!(recognise(&browser, NAMES, &KEY, "shop_2", "jana@example.com"), None);
        assert_eq!(recognise(&browser, NAMES, &[8u8; 64], "shop_1", "jana@example.com"), None);
        assert_eq!(recognise(&browser_with(None), NAMES, &KEY, "shop_1", "jana@example.com"), None);
        // A forged entry (someone else's id with a made-up signature) is not recognised.
        let forged = format!("__Host-portal_device={id}.{}", "A".repeat(MAC_CHARS));
        assert_eq!(recognise(&browser_with(Some(&forged)), NAMES, &KEY, "shop_1", "jana@example.com"), None);
    }

    #[test]
    fn one_browser_remembers_a_few_accounts_latest_first() {
        let mut cookie: Option<String> = None;
        for n in 0..6 {
            let browser = browser_with(cookie.as_deref());
            cookie = Some(remember(&browser, NAMES, &KEY, "shop_1", &format!("user{n}@example.com")));
        }
        let browser = browser_with(cookie.as_deref());
        let known: Vec<usize> = (0..6)
            .filter(|n| recognise(&browser, NAMES, &KEY, "shop_1", &format!("user{n}@example.com")).is_some())
            .collect();
        assert_eq!(known, vec![2, 3, 4, 5]);
        // Logging in again to a remembered account replaces its entry rather than adding one.
        let again = remember(&browser, NAMES, &KEY, "shop_1", "user3@example.com");
        assert_eq!(again.split(';').next().unwrap().matches('~').count(), ENTRIES - 1);
        let browser = browser_with(Some(&again));
        assert!(recognise(&browser, NAMES, &KEY, "shop_1", "user2@example.com").is_some());
    }
}
