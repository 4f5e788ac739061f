//! Exponential backoff with jitter for errors a retry can help.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

/// How to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Each delay is moved at random by up to this fraction either way.
    pub jitter: f64,
    /// Give up after this long; `None` retries until success.
    pub give_up_after: Option<Duration>,
    /// Once this is cancelled (shutdown), no failure is retried: the last
    /// error is returned at once, even from the middle of a wait.
    pub stop: Option<CancellationToken>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            jitter: 0.15,
            give_up_after: None,
            stop: None,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (the first retry is attempt 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let factor = 1.0 + rand::rng().random_range(-self.jitter..=self.jitter);
        Duration::from_secs_f64((capped * factor).max(0.0))
    }

    /// This policy, stopping its retries once `stop` is cancelled.
    pub fn stopped_by(self, stop: &CancellationToken) -> Self {
        Self {
            stop: Some(stop.clone()),
            ..self
        }
    }

    /// Whether the policy's stop signal was given.
    pub fn is_stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(CancellationToken::is_cancelled)
    }

    /// Runs `operation` until it succeeds, fails with an error `retryable`
    /// calls permanent, the policy gives up, or it is stopped. `on_retry`
    /// is told of each failure that will be retried.
    pub async fn run<T, E, Fut>(
        &self,
        mut operation: impl FnMut() -> Fut,
        retryable: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(err) => {
                    attempt += 1;
                    let delay = self.delay(attempt);
                    let out_of_time = self
                        .give_up_after
                        .is_some_and(|limit| started.elapsed() + delay > limit);
                    if !retryable(&err) || out_of_time || self.is_stopped() {
                        return Err(err);
                    }
                    on_retry(&err, attempt, delay);
                    match &self.stop {
                        Some(stop) => tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = stop.cancelled() => return Err(err),
                        },
                        None => tokio::time::sleep(delay).await,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_cap_within_jitter() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(120),
            jitter: 0.15,
            give_up_after: None,
            stop: None,
        };
        for (attempt, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (8, 120.0), (40, 120.0)] {
            let d = policy.delay(attempt).as_secs_f64();
            assert!(
                d >= base * 0.85 - 1e-9 && d <= base * 1.15 + 1e-9,
                "attempt {attempt}: {d}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let mut calls = 0;
        let result: Result<u32, &str> = RetryPolicy::default()
            .run(
                || {
                    calls += 1;
                    let outcome = if calls < 4 { Err("busy") } else { Ok(calls) };
                    async move { outcome }
                },
                |_| true,
                |_, _, _| {},
            )
            .await;
        assert_eq!(result, Ok(4));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_and_deadlines_stop_retrying() {
        let mut calls = 0;
        let result: Result<(), &str> = RetryPolicy::default()
            .run(
                || {
                    calls += 1;
                    async { Err("denied") }
                },
                |_| false,
                |_, _, _| {},
            )
            .await;
        assert_eq!((result, calls), (Err("denied"), 1));

        let limited = RetryPolicy {
            give_up_after: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let mut calls = 0;
        let result: Result<(), &str> = limited
            .run(
                || {
                    calls += 1;
                    async { Err("busy") }
                },
                |_| true,
                |_, _, _| {},
            )
            .await;
        assert_eq!(result, Err("busy"));
        assert!(calls > 3 && calls < 20, "{calls} calls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait_for_the_next_attempt() {
        let stop = CancellationToken::new();
        let policy = RetryPolicy {
            initial: Duration::from_secs(3600),
            ..RetryPolicy::default()
        }
        .stopped_by(&stop);
        let mut calls = 0;
        let stopper = stop.clone();
        let started = tokio::time::Instant::now();
        let (result, ()) = tokio::join!(
            policy.run(
                || {
                    calls += 1;
                    async { Err::<(), _>("busy") }
                },
                |_| true,
                |_, _, _| {},
            ),
            async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                stopper.cancel();
            }
        );
        assert_eq!((result, calls), (Err("busy"), 1));
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "stopped during the hour-long wait"
        );
        // Once stopped, a failure is not retried at all.
        let mut calls = 0;
        let again: Result<(), &str> = policy
            .run(
                || {
                    calls += 1;
                    async { Err("busy") }
                },
                |_| true,
                |_, _, _| {},
            )
            .await;
        assert_eq!((again, calls), (Err("busy"), 1));
    }
}
