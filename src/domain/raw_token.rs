//! A one-time token in clear, as it travels in a link: 32 random bytes, URL-safe base64. Only its
//! hash is ever stored (see `tokens`).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// A token in clear. Never logged: `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(String);

impl RawToken {
    /// 32 fresh random bytes.
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(crate::random::bytes::<32>()))
    }

    /// Accepts only what [`RawToken::generate`] produces (43 URL-safe characters).
    pub fn parse(text: &str) -> Option<Self> {
        let ok =
            text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(text.to_owned()))
    }

    /// The token for a link.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: SHA-256, hex. Tokens carry 256 bits of entropy, so a fast hash suffices.
    pub fn hash(&self) -> String {
        Sha256::digest(self.0.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawToken(redacted)")
    }
}
