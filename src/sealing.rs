//! Sealing a link's token for the outbox. While a message that carries a link is unfinished, its
//! token is kept in the outbox row encrypted (ChaCha20-Poly1305 with a service key of its own, the
//! message id as associated data, so a sealed token cannot be moved to another row). Every attempt
//! opens it and sends the same link: a retry after an ambiguous outcome (a timeout after DATA, a crash
//! between the server's acceptance and our commit) cannot leave the customer holding a dead link.
//! The sealed value is wiped when the message is finished.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::domain::RawToken;

/// The outbox key. `Debug` shows nothing of it.
pub struct Sealer(LessSafeKey);

impl Sealer {
    /// From the service key's bytes (at least 32).
    pub fn new(key: &[u8]) -> Result<Self, String> {
        let bytes = key.get(..32).ok_or("the outbox key is shorter than 32 bytes")?;
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| "the outbox key is unusable")?;
        Ok(Self(LessSafeKey::new(unbound)))
    }

    /// The token sealed for the message `message_id`: a random nonce and the ciphertext, base64.
    pub fn seal(&self, message_id: &str, token: &RawToken) -> String {
        let nonce_bytes = crate::random::bytes::<NONCE_LEN>();
        let mut sealed = token.as_str().as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(message_id.as_bytes()),
                &mut sealed,
            )
            .expect("ChaCha20-Poly1305 seals any input shorter than 256 GiB");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The token sealed for `message_id`, or `None` if `sealed` is not one of ours for that message
    /// (altered, moved to another row, or sealed under another key).
    pub fn open(&self, message_id: &str, sealed: &str) -> Option<RawToken> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(message_id.as_bytes()), &mut buffer).ok()?;
        RawToken::parse(std::str::from_utf8(plain).ok()?)
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&[byte; 64]).unwrap()
    }

    #[test]
    fn a_sealed_token_opens_only_for_its_message_and_key() {
        let token = RawToken::generate();
        let sealed = sealer(1).seal("msg_a", &token);
        assert_eq!(sealer(1).open("msg_a", &sealed), Some(token.clone()));
        assert!(!sealed.contains(token.as_str()));
        assert_eq!(sealer(1).open("msg_b", &sealed), None, "moved to another row");
        assert_eq!(sealer(2).open("msg_a", &sealed), None, "another key");
        // Two seals of the same token differ (fresh nonce), and both open.
        let again = sealer(1).seal("msg_a", &token);
        assert_ne!(sealed, again);
        assert_eq!(sealer(1).open("msg_a", &again), Some(token));
        assert!(Sealer::new(&[0; 16]).is_err());
        assert_eq!(format!("{:?}", sealer(1)), "Sealer(redacted)");
    }

    proptest! {
        #[test]
        fn anything_else_never_opens_and_never_panics(text in ".{0,200}", flip in 0usize..80) {
            let s = sealer(3);
            prop_assert_eq!(s.open("msg", &text), None);
            let mut sealed = s.seal("msg", &RawToken::generate()).into_bytes();
            let i = flip % sealed.len();
            sealed[i] = if sealed[i] == b'A' { b'B' } else { b'A' };
            prop_assert_eq!(s.open("msg", std::str::from_utf8(&sealed).unwrap()), None);
        }
    }
}
