//! Capped exponential backoff with jitter.

use std::time::Duration;

/// Capped exponential backoff: `base * 2^n` up to `max`, with up to 25 % random jitter
/// subtracted so that several consumers that failed together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.peek(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The delay for the `attempt`-th retry (0-based), without jitter state change.
    pub fn peek(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        let raw = self.base.saturating_mul(factor).min(self.max);
        let jitter = raw.mul_f64(rand::random::<f64>() * 0.25);
        raw.saturating_sub(jitter)
    }

    /// Start over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(75));
        for _ in 0..10 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        assert!(b.peek(30) >= Duration::from_millis(1500));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
