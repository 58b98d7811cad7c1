//! Randomness from the operating system's CSPRNG, for secrets, keys and tokens.

/// `N` bytes from the operating system's CSPRNG.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing is not something the service can work around or report usefully:
    // every secret it would make from here on would be unsafe.
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}
