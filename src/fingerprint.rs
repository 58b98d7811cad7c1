//! 128-bit fingerprints of in-memory keys: a set of recent ids or a store of rendered pages keeps 16
//! bytes per key instead of the key itself, and compares 16 bytes instead of a long key.
//!
//! A fingerprint is two SipHashes of the same bytes under secret keys drawn at start (std's
//! `RandomState`: random per process, the second key pair derived from the first). Two different
//! keys share a fingerprint with odds of about one in 2^128 per pair, and nobody outside knows the
//! keys to aim for one. Fingerprints are never stored or sent: they mean nothing to another process.

use std::{
    hash::{BuildHasher, DefaultHasher, Hasher, RandomState},
    io,
};

/// Two halves rather than a `u128`, whose 16-byte alignment would pad every map entry to 32 bytes.
pub type Fingerprint = [u64; 2];

/// The keys fingerprints are taken with; one per store, kept as long as it.
pub struct Fingerprints(RandomState, RandomState);

impl Fingerprints {
    /// Keys drawn now.
    pub fn new() -> Self {
        Self(RandomState::new(), RandomState::new())
    }

    /// The fingerprint of `bytes`.
    pub fn of(&self, bytes: &[u8]) -> Fingerprint {
        let mut taking = self.taking();
        taking.add(bytes);
        taking.finish()
    }

    /// A fingerprint taken of everything written to it, for a key that is streamed (a context
    /// serialized straight into it) rather than built first.
    pub fn taking(&self) -> Taking {
        Taking(self.0.build_hasher(), self.1.build_hasher())
    }
}

impl Default for Fingerprints {
    fn default() -> Self {
        Self::new()
    }
}

/// A fingerprint being taken: the same bytes, in the same order, give the same fingerprint however
/// they are split between writes.
pub struct Taking(DefaultHasher, DefaultHasher);

impl Taking {
    /// Adds `bytes`.
    pub fn add(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }

    /// The fingerprint of everything added.
    pub fn finish(&self) -> Fingerprint {
        [self.0.finish(), self.1.finish()]
    }
}

impl io::Write for Taking {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.add(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_same_bytes_give_the_same_fingerprint_however_split_and_others_another() {
        let keys = Fingerprints::new();
        let whole = keys.of(b"pages/login.html\n{\"shop\":\"Bob\"}");
        let mut taking = keys.taking();
        for part in [&b"pages/lo"[..], b"gin.html\n{\"sh", b"op\":\"Bob\"}"] {
            taking.write_all(part).unwrap();
        }
        assert_eq!(taking.finish(), whole);
        assert_ne!(keys.of(b"pages/login.html\n{\"shop\":\"Bo\"}"), whole);
        assert_ne!(whole[0], whole[1], "the halves are keyed apart");
        assert_ne!(Fingerprints::new().of(b"msg_1"), keys.of(b"msg_1"), "each store has keys of its own");
    }
}
