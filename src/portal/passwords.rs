//! Passwords: the rules a new one must meet, and argon2id hashing and verification off the async
//! threads, a bounded number at once.
//!
//! The rules follow current guidance (NIST SP 800-63B): a minimum length, a generous maximum, any
//! Unicode (normalised to NFC, so the same password typed on two keyboards matches) and spaces, no
//! composition rules; refused when it is a common password, or contains the email's local part or the
//! shop's name. Each refusal says why.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, PasswordHash, Salt},
};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use unicode_normalization::UnicodeNormalization;

/// The longest password accepted, in characters.
pub const MAX_LENGTH: usize = 128;
/// argon2id memory cost in KiB (OWASP's minimum for argon2id, m=19 MiB).
pub const MEMORY_KIB: u32 = 19_456;
/// argon2id passes.
pub const PASSES: u32 = 2;
/// argon2id lanes.
pub const LANES: u32 = 1;

/// Why a new password was refused; the text is shown under the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    /// Too short.
    #[error("Use at least {0} characters.")]
    TooShort(usize),
    /// Too long.
    #[error("Use at most 128 characters.")]
    TooLong,
    /// One of the passwords attackers try first.
    #[error("This is one of the most common passwords, so it would be guessed quickly. Choose another.")]
    Common,
    /// Too predictable (repeats, sequences, keyboard patterns).
    #[error(
        "This password is too easy to guess (repeated or sequential characters). Add more words or characters."
    )]
    Guessable,
    /// Contains the start of the email address.
    #[error("Don't use your email address in your password.")]
    ContainsEmail,
    /// Contains the shop's name.
    #[error("Don't use the shop's name in your password.")]
    ContainsShopName,
    /// The confirmation differs.
    #[error("The two passwords don't match. Type the same password twice.")]
    Mismatch,
}

/// The password normalised to NFC, as it is hashed and compared.
pub fn normalise(password: &str) -> String {
    password.nfc().collect()
}

/// Checks a new password and its confirmation; returns the normalised password to hash.
pub fn check_new(
    password: &str,
    confirmation: &str,
    min_length: usize,
    email_local_part: &str,
    shop_name: &str,
) -> Result<String, PasswordProblem> {
    let password = normalise(password);
    let length = password.chars().count();
    if length < min_length {
        return Err(PasswordProblem::TooShort(min_length));
    }
    if length > MAX_LENGTH {
        return Err(PasswordProblem::TooLong);
    }
    if normalise(confirmation) != password {
        return Err(PasswordProblem::Mismatch);
    }
    let lower = password.to_lowercase();
    let local = email_local_part.to_lowercase();
    if local.chars().count() >= 3 && lower.contains(&local) {
        return Err(PasswordProblem::ContainsEmail);
    }
    let shop = shop_name.to_lowercase();
    if shop.chars().count() >= 3 && lower.contains(&shop) {
        return Err(PasswordProblem::ContainsShopName);
    }
    let estimate = zxcvbn::zxcvbn(&password, &[]);
    // zxcvbn ranks the 30 000 most common passwords; its dictionary type is not exported, so the
    // dictionary is recognised by its name.
    let whole_password_is_common = estimate.sequence().iter().any(|m| {
        m.i == 0
            && m.j + 1 == length
            && matches!(&m.pattern, zxcvbn::matching::patterns::MatchPattern::Dictionary(d)
                if format!("{:?}", d.dictionary_name) == "Passwords")
    });
    if whole_password_is_common {
        return Err(PasswordProblem::Common);
    }
    if estimate.score() == zxcvbn::Score::Zero {
        return Err(PasswordProblem::Guessable);
    }
    Ok(password)
}

/// Too many hashes waiting: the caller answers `503` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity")]
pub struct Busy;

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The password matches.
    pub matches: bool,
    /// It matches, but was hashed with older parameters: store a new hash.
    pub needs_rehash: bool,
}

/// The longest a hash waits for its turn.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// The right to run one hash, taken before any other work so a request that would be turned away
/// is turned away at once, having cost nothing.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// argon2id with the service's parameters, on `limit` threads of its own, each reusing one 19 MiB
/// work area: memory stays at `limit × 19 MiB` however many logins arrive. A request waits at most
/// [`MAX_WAIT`] for a turn, and no more than `4 × limit` wait at all; the rest are refused at once.
pub struct Hasher {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    jobs: std::sync::mpsc::Sender<Job>,
    /// A hash of a random password, verified when there is no real hash, so every login takes as long.
    dummy: String,
}

fn params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 parameters")
}

/// Hashes a password into a PHC string with a fresh salt, in `memory`.
fn hash_with(password: &[u8], memory: &mut Vec<Block>) -> Result<String, String> {
    let params = params();
    let salt = crate::random::bytes::<16>();
    let mut output = [0u8; 32];
    memory.resize(params.block_count(), Block::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut output, memory.as_mut_slice())
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e: argon2::password_hash::Error| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&output).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a PHC string (of any argon2 parameters) in `memory`.
fn verify_with(password: &[u8], stored: &str, memory: &mut Vec<Block>) -> Verified {
    let no = Verified { matches: false, needs_rehash: false };
    let Ok(parsed) = PasswordHash::new(stored) else { return no };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) =
        (Algorithm::try_from(parsed.algorithm.as_str()), Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return no;
    };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or(Version::V0x13);
    let mut output = vec![0u8; expected.len()];
    memory.resize(params.block_count(), Block::default());
    let computed = Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
        password,
        salt.as_ref(),
        &mut output,
        memory.as_mut_slice(),
    );
    let matches = computed.is_ok() && bool::from(output.as_slice().ct_eq(expected.as_bytes()));
    Verified { matches, needs_rehash: matches && !current_parameters(algorithm, &params) }
}

impl Hasher {
    /// A hasher with `limit` threads.
    pub fn new(limit: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..limit {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = queue.lock().map(|q| q.recv());
                        match job {
                            Ok(Ok(job)) => job(&mut memory),
                            _ => return,
                        }
                    }
                })
                .expect("the OS starts a hashing thread");
        }
        let mut memory = Vec::new();
        let dummy = hash_with(crate::random::id("dummy").as_bytes(), &mut memory).expect("argon2 hashes");
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            waiting: AtomicUsize::new(0),
            max_waiting: limit * 4,
            jobs,
            dummy,
        }
    }

    /// Waits (briefly, and only if few others wait) for the right to hash.
    pub async fn turn(&self) -> Result<Turn, Busy> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(Turn { _permit: permit });
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        let permit = tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(Ok(permit)) => Ok(Turn { _permit: permit }),
            _ => Err(Busy),
        }
    }

    /// Hashes a (normalised) password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        let turn = self.turn().await?;
        self.hash_in(turn, password).await
    }

    /// Hashes a (normalised) password, on a turn already taken.
    pub async fn hash_in(&self, turn: Turn, password: String) -> Result<String, Busy> {
        self.run(turn, move |memory| hash_with(password.as_bytes(), memory)).await?.map_err(|e| {
            tracing::error!(error = %e, "argon2 failed to hash");
            Busy
        })
    }

    /// Checks a password against a stored hash, or against the dummy when there is none, so the
    /// time taken does not tell whether the account exists or has a password.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<Verified, Busy> {
        let turn = self.turn().await?;
        self.verify_in(turn, password, stored).await
    }

    /// Like [`Hasher::verify`], on a turn already taken.
    pub async fn verify_in(
        &self,
        turn: Turn,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, Busy> {
        let has_real_hash = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy.clone());
        let password = normalise(&password);
        let verified = self.run(turn, move |memory| verify_with(password.as_bytes(), &hash, memory)).await?;
        Ok(Verified {
            matches: verified.matches && has_real_hash,
            needs_rehash: verified.needs_rehash && has_real_hash,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        turn: Turn,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _turn = turn;
            let _ = reply.send(work(memory));
        });
        self.jobs.send(job).map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("available", &self.permits.available_permits()).finish_non_exhaustive()
    }
}

/// Whether a hash used today's algorithm and parameters.
fn current_parameters(algorithm: Algorithm, params: &Params) -> bool {
    algorithm == Algorithm::Argon2id
        && params.m_cost() == MEMORY_KIB
        && params.t_cost() == PASSES
        && params.p_cost() == LANES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str) -> Result<String, PasswordProblem> {
        check_new(password, password, 8, "jana.kowalski", "Southside Auto Care")
    }

    #[test]
    fn long_unicode_passphrases_with_spaces_are_welcome() {
        assert!(check("correct horse battery staple").is_ok());
        assert!(check("Ünïcödé ist erlaubt 🚗").is_ok());
        assert!(check("tyres-and-brakes-2026").is_ok());
    }

    #[test]
    fn every_refusal_has_its_reason() {
        assert_eq!(check("short1!"), Err(PasswordProblem::TooShort(8)));
        assert_eq!(check(&"a b".repeat(43)), Err(PasswordProblem::TooLong));
        assert_eq!(check("password1"), Err(PasswordProblem::Common));
        assert_eq!(check("qwertyuiop"), Err(PasswordProblem::Common));
        assert_eq!(check("iloveyou"), Err(PasswordProblem::Common));
        assert_eq!(check("aaaaaaaaaa"), Err(PasswordProblem::Guessable));
        assert_eq!(check("my Jana.Kowalski pass"), Err(PasswordProblem::ContainsEmail));
        assert_eq!(check("southside auto care rocks"), Err(PasswordProblem::ContainsShopName));
        assert_eq!(
            check_new("long enough pass", "long enough pas", 8, "j", "s"),
            Err(PasswordProblem::Mismatch)
        );
        assert_eq!(
            check_new("twelve chars", "twelve chars", 16, "j", "s"),
            Err(PasswordProblem::TooShort(16))
        );
    }

    #[test]
    fn composed_and_decomposed_forms_are_the_same_password() {
        let composed = "caf\u{e9} au lait x";
        let decomposed = "cafe\u{301} au lait x";
        assert_eq!(check_new(composed, decomposed, 8, "j", "s"), Ok(normalise(composed)));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_required_parameters_and_verify() {
        let hasher = Hasher::new(2);
        let hash = hasher.hash("correct horse battery staple".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        // The standard verifier agrees with ours: the PHC string is well-formed.
        use argon2::password_hash::PasswordVerifier;
        assert!(
            argon2::Argon2::default()
                .verify_password(b"correct horse battery staple", &PasswordHash::new(&hash).unwrap())
                .is_ok()
        );
        let ok = hasher.verify("correct horse battery staple".into(), Some(hash.clone())).await.unwrap();
        assert_eq!(ok, Verified { matches: true, needs_rehash: false });
        let wrong = hasher.verify("wrong horse battery staple".into(), Some(hash)).await.unwrap();
        assert!(!wrong.matches);
        let none = hasher.verify("anything at all".into(), None).await.unwrap();
        assert!(!none.matches, "the dummy hash never matches");
    }

    #[tokio::test]
    async fn older_parameters_ask_for_a_rehash() {
        use argon2::password_hash::PasswordHasher;
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap())
            .hash_password(b"correct horse battery staple")
            .unwrap()
            .to_string();
        let verified =
            Hasher::new(1).verify("correct horse battery staple".into(), Some(weak)).await.unwrap();
        assert_eq!(verified, Verified { matches: true, needs_rehash: true });
    }

    #[tokio::test]
    async fn beyond_the_bound_requests_are_refused_quickly() {
        let hasher = Arc::new(Hasher::new(1));
        let attempts = (0..40).map(|_| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash("correct horse battery staple".into()).await })
        });
        let results = futures_util::future::join_all(attempts).await;
        let busy = results.iter().filter(|r| matches!(r, Ok(Err(Busy)))).count();
        let done = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert!(done >= 1, "some were hashed");
        assert!(busy >= 30, "with 1 permit and 4 waiting places, most of 40 are refused: {busy}");
    }
}
