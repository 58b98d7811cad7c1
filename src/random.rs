//! Randomness from the operating system's CSPRNG, for secrets, keys and tokens.

/// `N` bytes from the operating system's CSPRNG.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing is not something the service can work around or report usefully:
    // every secret it would make from here on would be unsafe.
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}

/// A new identifier for a row of ours: `prefix` + `_` + 32 hex digits (128 random bits).
pub fn id(prefix: &str) -> String {
    let mut text = String::with_capacity(prefix.len() + 33);
    text.push_str(prefix);
    text.push('_');
    for byte in bytes::<16>() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = super::id("inv");
        assert!(a.starts_with("inv_") && a.len() == 36);
        assert_ne!(a, super::id("inv"));
    }
}
