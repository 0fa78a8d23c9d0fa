//! [`Llm`]: the one type callers use. It wraps any [`LlmBackend`] with
//!
//! - the on-disk [`Cache`] (a rerun reads every answered request back and pays nothing; such
//!   replies have `cached: true`);
//! - retries of retryable errors ([`LlmError::is_retryable`]) with exponential backoff and
//!   jitter, waiting at least what a rate limit's `retry-after` says;
//! - a per-request timeout (handed to the backend when it is built from a [`BackendConfig`]);
//! - a concurrency limit: [`Llm::chat_many`] runs requests on at most
//!   [`LlmOptions::concurrency`] threads and returns the replies in request order;
//! - a [`UsageReport`]: calls, cached calls, retries, tokens, and the cost when
//!   [`Prices`] are given; print it at the end of a run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use crate::cache::Cache;
use crate::config::BackendConfig;
use crate::{ChatReply, ChatRequest, LlmBackend, LlmError, Result, Usage};

/// The longest wait a `retry-after` header can impose (a server asking for more is treated as
/// asking for this).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prices {
    /// Per million input (prompt) tokens.
    pub input_per_million: f64,
    /// Per million output (generated) tokens.
    pub output_per_million: f64,
}

impl std::str::FromStr for Prices {
    type Err = LlmError;

    /// `IN/OUT` dollars per million tokens, e.g. `3/15`.
    fn from_str(s: &str) -> Result<Prices> {
        let bad = || {
            LlmError::Config(format!(
                "prices {s:?}: expected INPUT/OUTPUT dollars per million tokens, e.g. 3/15"
            ))
        };
        let (i, o) = s.split_once('/').ok_or_else(bad)?;
        let parse = |x: &str| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(bad)
        };
        Ok(Prices {
            input_per_million: parse(i)?,
            output_per_million: parse(o)?,
        })
    }
}

/// How [`Llm`] calls its backend.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// Cache folder; `None` = no cache.
    pub cache_dir: Option<PathBuf>,
    /// Tries per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Longest backoff wait (a `retry-after` may ask for more, up to 10 minutes).
    pub max_delay: Duration,
    /// Per-request timeout (HTTP: the whole exchange; local: checked between tokens).
    pub timeout: Duration,
    /// Most requests in flight at once in [`Llm::chat_many`].
    pub concurrency: usize,
    /// For the cost line of the report.
    pub prices: Option<Prices>,
}

impl Default for LlmOptions {
    /// No cache, 5 attempts, backoff from 1 s to 60 s, 120 s timeout, 4 at once, no prices.
    fn default() -> Self {
        LlmOptions {
            cache_dir: None,
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(120),
            concurrency: 4,
            prices: None,
        }
    }
}

impl LlmOptions {
    /// Caches requests and replies in `dir`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
    /// Tries per request.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Backoff: first wait and longest wait.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max.max(base);
        self
    }
    /// Per-request timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Requests in flight at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    /// Prices for the cost line.
    pub fn prices(mut self, p: Prices) -> Self {
        self.prices = Some(p);
        self
    }
}

/// What a run used.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UsageReport {
    /// The backend ([`LlmBackend::describe`]).
    pub backend: String,
    /// Requests answered by the backend.
    pub calls: u64,
    /// Requests answered from the cache.
    pub cached_calls: u64,
    /// Requests that failed after all attempts.
    pub failed_calls: u64,
    /// Retries made (attempts beyond the first).
    pub retries: u64,
    /// Tokens of the calls answered by the backend.
    pub usage: Usage,
    /// Tokens the cached replies had cost when they were first asked.
    pub cached_usage: Usage,
    /// Prices, when known.
    pub prices: Option<Prices>,
}

impl UsageReport {
    /// Dollars paid in this run, when prices are known.
    pub fn cost(&self) -> Option<f64> {
        self.prices.map(|p| {
            (self.usage.input_tokens as f64 * p.input_per_million
                + self.usage.output_tokens as f64 * p.output_per_million)
                / 1e6
        })
    }
}

impl std::fmt::Display for UsageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LLM usage ({}): {} calls + {} from cache, {} failed, {} retries; \
             {} input + {} output tokens paid ({} + {} saved by the cache)",
            self.backend,
            self.calls,
            self.cached_calls,
            self.failed_calls,
            self.retries,
            self.usage.input_tokens,
            self.usage.output_tokens,
            self.cached_usage.input_tokens,
            self.cached_usage.output_tokens
        )?;
        if let (Some(cost), Some(p)) = (self.cost(), self.prices) {
            write!(
                f,
                "; cost ${cost:.4} at ${}/${} per million input/output tokens",
                p.input_per_million, p.output_per_million
            )?;
        }
        Ok(())
    }
}

/// A backend with cache, retries, a concurrency limit and usage accounting.
pub struct Llm {
    backend: Box<dyn LlmBackend>,
    identity: String,
    cache: Option<Cache>,
    options: LlmOptions,
    report: Mutex<UsageReport>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("backend", &self.identity)
            .field("cache", &self.cache)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// Wraps a backend (a real one, or a test fake).
    pub fn new(backend: Box<dyn LlmBackend>, options: LlmOptions) -> Result<Llm> {
        let cache = options.cache_dir.as_ref().map(Cache::open).transpose()?;
        let identity = backend.describe();
        Ok(Llm {
            report: Mutex::new(UsageReport {
                backend: identity.clone(),
                prices: options.prices,
                ..UsageReport::default()
            }),
            backend,
            identity,
            cache,
            options,
        })
    }

    /// Builds the configured backend (with the options' timeout) and wraps it.
    pub fn from_config(config: &BackendConfig, options: LlmOptions) -> Result<Llm> {
        let backend = config.build(options.timeout)?;
        Llm::new(backend, options)
    }

    /// The backend's description (no secrets).
    pub fn describe(&self) -> &str {
        &self.identity
    }

    /// Whether replies carry logprobs when asked.
    pub fn supports_logprobs(&self) -> bool {
        self.backend.supports_logprobs()
    }

    /// The wrapped backend.
    pub fn backend(&self) -> &dyn LlmBackend {
        self.backend.as_ref()
    }

    /// The cache, when there is one.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// Usage so far.
    pub fn report(&self) -> UsageReport {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UsageReport> {
        // A panic elsewhere while holding the lock leaves counters that are still meaningful.
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One request: from the cache, or from the backend with retries (and then cached).
    pub fn chat(&self, request: &ChatRequest) -> Result<ChatReply> {
        if let Some(cache) = &self.cache {
            if let Some(reply) = cache.get(&self.identity, request)? {
                let mut r = self.lock();
                r.cached_calls += 1;
                r.cached_usage += reply.usage;
                return Ok(reply);
            }
        }
        let result = self.call_with_retries(request);
        match &result {
            Ok(reply) => {
                {
                    let mut r = self.lock();
                    r.calls += 1;
                    r.usage += reply.usage;
                }
                if let Some(cache) = &self.cache {
                    // The reply is paid for; losing it over a full disk would be worse than
                    // asking again on the next run.
                    if let Err(e) = cache.put(&self.identity, request, reply) {
                        tracing::warn!("{e}; the reply is used but not cached");
                    }
                }
            }
            Err(_) => self.lock().failed_calls += 1,
        }
        result
    }

    fn call_with_retries(&self, request: &ChatRequest) -> Result<ChatReply> {
        let attempts = self.options.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.backend.chat(request) {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let wait = self.delay(attempt, &e);
                    tracing::warn!(
                        "{e}; retrying in {:.1}s (attempt {}/{attempts})",
                        wait.as_secs_f64(),
                        attempt + 1
                    );
                    self.lock().retries += 1;
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Backoff before retry number `attempt` (1-based): `base · 2^(attempt-1)` capped at
    /// `max_delay`, scaled by a random factor in [0.5, 1] so parallel workers spread out; never
    /// less than a rate limit's `retry-after`.
    fn delay(&self, attempt: u32, error: &LlmError) -> Duration {
        let exp = self
            .options
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.options.max_delay);
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        match error {
            LlmError::RateLimited {
                retry_after_s: Some(s),
                ..
            } => jittered.max(Duration::from_secs_f64(*s).min(MAX_RETRY_AFTER)),
            _ => jittered,
        }
    }

    /// Many requests on at most [`LlmOptions::concurrency`] threads; replies in request order.
    pub fn chat_many(&self, requests: &[ChatRequest]) -> Vec<Result<ChatReply>> {
        self.chat_many_with(requests, &|_, _| {})
    }

    /// [`Llm::chat_many`], calling `done(index, &result)` as each request finishes (from the
    /// worker threads; e.g. to advance a progress bar).
    pub fn chat_many_with(
        &self,
        requests: &[ChatRequest],
        done: &(dyn Fn(usize, &Result<ChatReply>) + Sync),
    ) -> Vec<Result<ChatReply>> {
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Result<ChatReply>>>> =
            requests.iter().map(|_| Mutex::new(None)).collect();
        let workers = self.options.concurrency.max(1).min(requests.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() {
                        break;
                    }
                    let result = self.chat(&requests[i]);
                    done(i, &result);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                });
            }
        });
        slots
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or_else(|| Err(LlmError::Config("a worker thread died".into())))
            })
            .collect()
    }
}

/// An [`Llm`] is itself a backend, so code written against [`LlmBackend`] (the description
/// pipeline, test fakes) gets the cache, retries and accounting by taking a `&Llm`.
impl LlmBackend for Llm {
    fn describe(&self) -> String {
        self.identity.clone()
    }

    fn supports_logprobs(&self) -> bool {
        self.backend.supports_logprobs()
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatReply> {
        Llm::chat(self, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;
    use std::sync::atomic::AtomicU32;

    /// Fails `fail` times with `error`, then echoes the last message.
    struct Flaky {
        fail: u32,
        calls: AtomicU32,
        retryable: bool,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl Flaky {
        fn new(fail: u32, retryable: bool) -> Flaky {
            Flaky {
                fail,
                calls: AtomicU32::new(0),
                retryable,
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
            }
        }
    }

    impl LlmBackend for std::sync::Arc<Flaky> {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn supports_logprobs(&self) -> bool {
            false
        }
        fn chat(&self, request: &ChatRequest) -> Result<ChatReply> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                return Err(if self.retryable {
                    LlmError::Transient {
                        endpoint: "x".into(),
                        message: "boom".into(),
                    }
                } else {
                    LlmError::Rejected {
                        endpoint: "x".into(),
                        status: 400,
                        message: "no".into(),
                    }
                });
            }
            Ok(ChatReply {
                text: request.messages.last().unwrap().content.clone(),
                logprobs: vec![],
                finish_reason: Some("stop".into()),
                usage: Usage {
                    input_tokens: 10,
                    output_tokens: 2,
                },
                cached: false,
            })
        }
    }

    fn fast() -> LlmOptions {
        LlmOptions::default().backoff(Duration::from_millis(1), Duration::from_millis(5))
    }

    #[test]
    fn retries_transient_errors_but_not_rejections() {
        let b = std::sync::Arc::new(Flaky::new(2, true));
        let llm = Llm::new(Box::new(b.clone()), fast().max_attempts(3)).unwrap();
        let r = llm
            .chat(&ChatRequest::new(vec![Message::user("a")]))
            .unwrap();
        assert_eq!(r.text, "a");
        assert_eq!(b.calls.load(Ordering::SeqCst), 3);
        assert_eq!(llm.report().retries, 2);

        let b = std::sync::Arc::new(Flaky::new(5, true));
        let llm = Llm::new(Box::new(b.clone()), fast().max_attempts(3)).unwrap();
        assert!(llm
            .chat(&ChatRequest::new(vec![Message::user("a")]))
            .is_err());
        assert_eq!(b.calls.load(Ordering::SeqCst), 3);
        assert_eq!(llm.report().failed_calls, 1);

        let b = std::sync::Arc::new(Flaky::new(1, false));
        let llm = Llm::new(Box::new(b.clone()), fast()).unwrap();
        assert!(matches!(
            llm.chat(&ChatRequest::new(vec![Message::user("a")])),
            Err(LlmError::Rejected { .. })
        ));
        assert_eq!(b.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn chat_many_keeps_order_and_limits_concurrency() {
        let b = std::sync::Arc::new(Flaky::new(0, true));
        let llm = Llm::new(Box::new(b.clone()), fast().concurrency(3)).unwrap();
        let reqs: Vec<ChatRequest> = (0..12)
            .map(|i| ChatRequest::new(vec![Message::user(format!("m{i}"))]))
            .collect();
        let done = AtomicUsize::new(0);
        let out = llm.chat_many_with(&reqs, &|_, _| {
            done.fetch_add(1, Ordering::SeqCst);
        });
        let texts: Vec<String> = out.into_iter().map(|r| r.unwrap().text).collect();
        assert_eq!(texts, (0..12).map(|i| format!("m{i}")).collect::<Vec<_>>());
        assert_eq!(done.load(Ordering::SeqCst), 12);
        let peak = b.max_in_flight.load(Ordering::SeqCst);
        assert!((2..=3).contains(&peak), "peak concurrency {peak}");
        let rep = llm.report();
        assert_eq!((rep.calls, rep.usage.input_tokens), (12, 120));
    }

    #[test]
    fn llm_is_a_backend_with_its_cache() {
        let dir = tempfile::tempdir().unwrap();
        let b = std::sync::Arc::new(Flaky::new(0, true));
        let llm = Llm::new(Box::new(b.clone()), fast().cache_dir(dir.path())).unwrap();
        let as_backend: &dyn LlmBackend = &llm;
        let req = ChatRequest::new(vec![Message::user("q")]);
        assert!(!as_backend.chat(&req).unwrap().cached);
        assert!(as_backend.chat(&req).unwrap().cached);
        assert_eq!(b.calls.load(Ordering::SeqCst), 1);
        assert_eq!(as_backend.describe(), "flaky");
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let b = std::sync::Arc::new(Flaky::new(0, true));
        let llm = Llm::new(
            Box::new(b),
            LlmOptions::default().backoff(Duration::from_secs(1), Duration::from_secs(4)),
        )
        .unwrap();
        let t = LlmError::Transient {
            endpoint: "x".into(),
            message: "m".into(),
        };
        for (attempt, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)] {
            let d = llm.delay(attempt, &t).as_secs_f64();
            assert!(d >= full * 0.5 - 1e-9 && d <= full + 1e-9, "{attempt}: {d}");
        }
        let rl = LlmError::RateLimited {
            endpoint: "x".into(),
            retry_after_s: Some(30.0),
        };
        assert!(llm.delay(1, &rl).as_secs_f64() >= 30.0);
    }

    #[test]
    fn report_line_and_cost() {
        let rep = UsageReport {
            backend: "b".into(),
            calls: 2,
            usage: Usage {
                input_tokens: 1_000_000,
                output_tokens: 200_000,
            },
            prices: Some("3/15".parse().unwrap()),
            ..UsageReport::default()
        };
        assert!((rep.cost().unwrap() - 6.0).abs() < 1e-9);
        let line = rep.to_string();
        assert!(line.contains("$6.0000"), "{line}");
        assert!("3".parse::<Prices>().is_err());
        assert!("a/b".parse::<Prices>().is_err());
    }
}
