//! Argon2id hashing (OWASP parameters: m = 19 MiB, t = 2, p = 1) off the
//! reactor, on threads of its own, with bounded concurrency so a login storm
//! cannot exhaust memory or starve the workers. The hashing threads may run
//! at the lowest CPU priority (`password.low_priority`): one hash holds a
//! core for ~15-30 ms, and at normal priority the scheduler hands it slices
//! of several milliseconds while request handlers on the same core wait
//! (the benchmark measured proxied p99 3.7x its idle value during a login
//! storm, against 1.15x for a storm of cheap refusals).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHasher as _;
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password operations waiting")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Hashes and verifies passwords on the hashing threads.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// Verified against when the user is unknown, so that case costs the same.
    dummy_hash: Arc<str>,
    pool: Arc<Pool>,
}

type Job = Box<dyn FnOnce() + Send>;

/// `threads` threads taking jobs from one queue (the semaphore in front
/// keeps at most `threads` jobs in it, so none waits here).
struct Pool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Pool {
    fn start(threads: usize, low_priority: bool) -> Result<Self, HashError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    if low_priority {
                        lower_priority();
                    }
                    loop {
                        // The lock is held only to take one job.
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // Every hasher is gone.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashError::Failed(format!("starting a hashing thread: {e}")))?;
        }
        Ok(Self { jobs })
    }
}

/// This thread at nice 19 under SCHED_BATCH: it runs whenever the core is
/// free and yields it to anything else that wants it.
fn lower_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
    ) {
        tracing::warn!(error = ?e, "cannot lower the hashing thread's priority; it keeps the normal one");
    }
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &SecretString) -> Result<String, HashError> {
    argon2()?
        .hash_password(password.expose_secret().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

thread_local! {
    /// The 19 MiB of argon2 working memory, kept by each blocking thread
    /// between verifies: allocating and faulting it in afresh cost about
    /// half as much again as the hash itself (see bench/README.md).
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn verify_blocking(password: &SecretString, hash: &str) -> Result<bool, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let parsed = argon2::PasswordHash::new(hash).map_err(|e| failed(&e))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(HashError::Failed(
            "the stored hash has no salt or output".into(),
        ));
    };
    let algorithm =
        argon2::Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| failed(&e))?;
    let version = parsed
        .version
        .map(argon2::Version::try_from)
        .transpose()
        .map_err(|e| failed(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| failed(&e))?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    BLOCKS
        .with(|blocks| {
            let mut blocks = blocks.borrow_mut();
            blocks.resize(params.block_count(), argon2::Block::default());
            argon.hash_password_into_with_memory(
                password.expose_secret().as_bytes(),
                salt.as_ref(),
                &mut out,
                &mut blocks[..],
            )
        })
        .map_err(|e| failed(&e))?;
    // Constant-time comparison (Output's PartialEq).
    let computed = argon2::password_hash::phc::Output::new(&out).map_err(|e| failed(&e))?;
    Ok(&computed == expected)
}

/// A strong random password (24 alphanumerics, ~143 bits).
pub fn generate_password() -> SecretString {
    let s: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    SecretString::from(s)
}

impl PasswordHasher {
    /// Startup: computes the dummy hash (blocking, once).
    pub fn new(
        max_concurrent: usize,
        queue_timeout: Duration,
        low_priority: bool,
    ) -> Result<Self, HashError> {
        let dummy_hash = hash_blocking(&generate_password())?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queue_timeout,
            dummy_hash: dummy_hash.into(),
            pool: Arc::new(Pool::start(max_concurrent.max(1), low_priority)?),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(HashError::Failed("the hashing thread panicked".into())));
            drop(permit);
            let _ = done.send(r);
        });
        self.pool
            .jobs
            .send(job)
            .map_err(|_| HashError::Failed("the hashing threads are gone".into()))?;
        answer
            .await
            .map_err(|_| HashError::Failed("a hashing thread stopped".into()))?
    }

    /// A PHC string for a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        common::traces::in_child("argon2 hash", self.run(move || hash_blocking(&password))).await
    }

    /// The hash a verification runs against, and whether it is the
    /// account's own: the dummy (made like every stored hash, by
    /// [`hash_blocking`] with the same parameters) when there is none.
    fn to_verify(&self, hash: Option<String>) -> (String, bool) {
        match hash.filter(|h| !h.is_empty()) {
            Some(h) => (h, true),
            None => (self.dummy_hash.to_string(), false),
        }
    }

    /// Check a password. With no hash (unknown user) or an empty one (an
    /// account linked to an identity provider, which has no password) the
    /// dummy hash is checked instead and the answer is `false`: the same
    /// work either way.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let (hash, known) = self.to_verify(hash);
        // The span covers the wait for a hashing slot too: that is where a
        // login under load spends its time.
        let ok = common::traces::in_child(
            "argon2 verify",
            self.run(move || verify_blocking(&password, &hash)),
        )
        .await?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn hashing_threads_run_at_the_lowest_priority() {
        let h =
            PasswordHasher::new(1, Duration::from_secs(5), true).unwrap_or_else(|e| panic!("{e}"));
        let pw = SecretString::from("correct horse battery".to_owned());
        let nice = h
            .run(|| {
                // Field 19 of /proc/thread-self/stat, after the command in parentheses.
                let stat = std::fs::read_to_string("/proc/thread-self/stat")
                    .map_err(|e| HashError::Failed(e.to_string()))?;
                let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                Ok(after.split_whitespace().nth(16).unwrap_or("").to_owned())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nice, "19");
        // And the work still gets done.
        let hash = h.hash(pw.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            h.verify(pw, Some(hash))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
    }

    #[actix_web::test]
    async fn hash_verify_and_dummy() {
        let h =
            PasswordHasher::new(2, Duration::from_secs(5), true).unwrap_or_else(|e| panic!("{e}"));
        let pw = SecretString::from("correct horse battery".to_owned());
        let hash = h.hash(pw.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            h.verify(pw.clone(), Some(hash.clone()))
                .await
                .unwrap_or(false)
        );
        assert!(
            !h.verify(SecretString::from("wrong".to_owned()), Some(hash))
                .await
                .unwrap_or(true)
        );
        // Unknown user: never true, even for the dummy's own password shape.
        assert!(!h.verify(pw, None).await.unwrap_or(true));
    }

    /// The fields of a PHC string that decide what a verification costs.
    fn cost(phc: &str) -> (String, Option<u32>, String, usize, usize) {
        let p = argon2::PasswordHash::new(phc).unwrap_or_else(|e| panic!("{phc}: {e}"));
        (
            p.algorithm.to_string(),
            p.version,
            p.params.to_string(),
            p.salt.map_or(0, |s| s.as_ref().len()),
            p.hash.map_or(0, |h| h.len()),
        )
    }

    /// An unknown user (no hash) and a linked account (an empty one) are
    /// verified against the dummy, an argon2id hash with the parameters,
    /// salt and output lengths of the hashes passwords are stored as: the
    /// same work as a wrong password.
    #[actix_web::test]
    async fn the_dummy_costs_what_a_stored_hash_costs() {
        let h =
            PasswordHasher::new(1, Duration::from_secs(5), false).unwrap_or_else(|e| panic!("{e}"));
        let stored = h
            .hash(SecretString::from("correct horse battery".to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for missing in [None, Some(String::new())] {
            let (dummy, known) = h.to_verify(missing);
            assert!(!known);
            assert_eq!(cost(&dummy), cost(&stored), "{dummy} vs {stored}");
            assert_eq!(
                cost(&dummy),
                (
                    "argon2id".to_owned(),
                    Some(19),
                    "m=19456,t=2,p=1".to_owned(),
                    16,
                    32
                )
            );
        }
        assert_eq!(h.to_verify(Some(stored.clone())), (stored, true));
    }
}
