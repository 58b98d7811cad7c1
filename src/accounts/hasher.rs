//! argon2id hashing and verification off the async threads, a bounded number at once.
//!
//! Memory is bounded by threads: `limit` threads of our own, each reusing one 19 MiB work area, so
//! it stays at `limit × 19 MiB` however many logins arrive. Time is bounded by admission: a request
//! is admitted (or refused with [`Busy`], at once) before it does anything else, then does its
//! database reads while others hash, and only then waits for a turn, at most [`MAX_WAIT`]. A turn
//! is a place in the threads' queue; there are two per thread, so a thread that finishes a hash
//! finds the next one already queued instead of idling while a request wakes up.

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

use super::passwords::normalise;

/// argon2id memory cost in KiB (OWASP's minimum for argon2id, m=19 MiB).
pub const MEMORY_KIB: u32 = 19_456;
/// argon2id passes.
pub const PASSES: u32 = 2;
/// argon2id lanes.
pub const LANES: u32 = 1;

/// The longest an admitted request waits for its turn.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Turns per thread: one hashing, one queued behind it.
const QUEUED_PER_THREAD: usize = 2;
/// Admitted requests per thread beyond the turns: these wait (and do their reads meanwhile).
const WAITING_PER_THREAD: usize = 4;

/// Too many hashes waiting: the caller answers `503` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity")]
pub struct Busy;

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    /// It matches, but was hashed with older parameters: store a new hash.
    pub needs_rehash: bool,
}

/// A request admitted to hash. It holds its place in the bound until dropped (after its hash, or
/// when the request gives up), so requests beyond the bound are refused before any other work.
pub struct Admission {
    admitted: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
}

impl Admission {
    /// Waits (at most [`MAX_WAIT`]) for a place in the hashing queue.
    pub async fn turn(self) -> Result<Turn, Busy> {
        let waiting = std::time::Instant::now();
        let turn = match tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn { _permit: permit, _admission: self }),
            _ => Err(Busy),
        };
        metrics::histogram!("portal_password_hashing_wait_seconds").record(waiting.elapsed().as_secs_f64());
        if turn.is_err() {
            metrics::counter!("portal_password_hashing_busy_total", "stage" => "queue").increment(1);
        }
        turn
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let before = self.admitted.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("portal_password_hashing_admitted").set(before.saturating_sub(1) as f64);
    }
}

/// A place in the hashing queue, held until the hash is done.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    _admission: Admission,
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// argon2id with the service's parameters, on threads of its own (see the module's comment).
pub struct Hasher {
    permits: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
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
        let limit = limit.max(1);
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
        let turns = limit * QUEUED_PER_THREAD;
        Self {
            permits: Arc::new(Semaphore::new(turns)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: turns + limit * WAITING_PER_THREAD,
            jobs,
            dummy,
        }
    }

    /// Admits one request to hash, or refuses it at once when the bound is reached. Take it before
    /// any other work, so a refused request has cost nothing.
    pub fn admit(&self) -> Result<Admission, Busy> {
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        // Built before the check so that dropping it (refused or not) gives the place back.
        let admission = Admission { admitted: self.admitted.clone(), permits: self.permits.clone() };
        if before >= self.max_admitted {
            metrics::counter!("portal_password_hashing_busy_total", "stage" => "admission").increment(1);
            return Err(Busy);
        }
        metrics::counter!("portal_password_hashing_admissions_total").increment(1);
        metrics::gauge!("portal_password_hashing_admitted").set((before + 1) as f64);
        Ok(admission)
    }

    /// Admission and turn in one, for callers with nothing to do in between.
    pub async fn turn(&self) -> Result<Turn, Busy> {
        self.admit()?.turn().await
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
            let outcome = work(memory);
            // The place is given back before the answer, so whoever gets the answer finds it free.
            drop(turn);
            let _ = reply.send(outcome);
        });
        self.jobs.send(job).map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("admitted", &self.admitted.load(Ordering::Relaxed))
            .field("free_turns", &self.permits.available_permits())
            .finish_non_exhaustive()
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
        assert!(busy >= 30, "with 2 turns and 4 waiting places, most of 40 are refused: {busy}");
    }

    #[tokio::test]
    async fn admission_is_refused_at_the_bound_and_given_back_when_dropped() {
        let hasher = Hasher::new(1);
        let bound = QUEUED_PER_THREAD + WAITING_PER_THREAD;
        let admitted: Vec<Admission> = (0..bound).map(|_| hasher.admit().unwrap()).collect();
        assert!(hasher.admit().is_err(), "one beyond the bound is refused");
        assert!(hasher.admit().is_err(), "a refusal does not take a place either way");
        drop(admitted);
        let again: Vec<Admission> = (0..bound).map(|_| hasher.admit().unwrap()).collect();
        assert_eq!(again.len(), bound, "every place came back");
    }

    #[tokio::test]
    async fn a_turn_keeps_its_place_until_the_hash_is_done() {
        let hasher = Hasher::new(1);
        let bound = QUEUED_PER_THREAD + WAITING_PER_THREAD;
        let turn = hasher.admit().unwrap().turn().await.unwrap();
        let others: Vec<Admission> = (1..bound).map(|_| hasher.admit().unwrap()).collect();
        assert!(hasher.admit().is_err(), "the turn still counts");
        hasher.hash_in(turn, "correct horse battery staple".into()).await.unwrap();
        assert!(hasher.admit().is_ok(), "its place is free once hashed");
        drop(others);
    }
}
