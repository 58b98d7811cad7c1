//! Randomness for secrets, keys and tokens.
//!
//! `rand::rng()` is a per-thread ChaCha12 CSPRNG seeded from the operating system and reseeded by
//! it periodically, the generator the `rand` crate recommends for secrets. It replaced one
//! `getrandom` system call per token, cookie and row id, which showed up on the hot paths of the
//! benchmark (every page view issues a CSRF token; every webhook writes ids).

use rand::RngCore;

/// `N` bytes from a cryptographically secure generator.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// A new identifier for a row of ours: `prefix` + `_` + 32 hex digits (128 random bits).
pub fn id(prefix: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(prefix.len() + 33);
    text.push_str(prefix);
    text.push('_');
    for byte in bytes::<16>() {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_lowercase_hex_and_distinct() {
        let a = super::id("inv");
        assert!(a.starts_with("inv_") && a.len() == 36);
        assert!(a[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(a, super::id("inv"));
    }

    #[test]
    fn bytes_are_not_constant() {
        // 256 bits drawn twice colliding would mean the generator is broken, not unlucky.
        assert_ne!(super::bytes::<32>(), super::bytes::<32>());
        assert_ne!(super::bytes::<32>(), [0u8; 32]);
    }
}
