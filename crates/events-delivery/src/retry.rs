//! When to try again, and what an answer means.
//!
//! The rules are Svix's: 2xx is success; everything else is a failure that is retried on
//! the schedule until it runs out — including 3xx, because redirects are not followed (a
//! redirect could point the signed payload at an internal address); `410 Gone` means the
//! receiver wants no more and disables the endpoint at once; `429`, `502` and `504` may
//! carry `Retry-After`, which then delays the next attempt at least that long.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// Longest `Retry-After` honoured; a receiver asking for more gets the schedule's delay
/// clamped to this (it cannot park a delivery for a year).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The Svix default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_SCHEDULE_SECS: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

/// Delays before each attempt: `delays[0]` before the first (normally zero), `delays[k]`
/// before attempt `k + 1`. When the list is used up the delivery has failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::new(
            DEFAULT_SCHEDULE_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            0.1,
        )
    }
}

impl RetrySchedule {
    /// A schedule with `jitter` as a fraction (`0.1` = each delay varies by ±10 %), so
    /// that many deliveries failing together do not retry in lockstep.
    pub fn new(delays: Vec<Duration>, jitter: f64) -> Self {
        Self {
            delays,
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    /// The configured delays.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How many attempts a delivery gets in total.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX)
    }

    /// Delay after attempt number `attempts_made` (1-based) failed, before the next
    /// one, or `None` when no attempt is left. Jitter applies to non-zero delays.
    pub fn next_delay(&self, attempts_made: u32) -> Option<Duration> {
        let base = *self.delays.get(usize::try_from(attempts_made).ok()?)?;
        if base.is_zero() || self.jitter == 0.0 {
            return Some(base);
        }
        let factor = 1.0 + rand::random_range(-self.jitter..=self.jitter);
        Some(base.mul_f64(factor))
    }
}

/// What one attempt's answer means for the delivery and its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Success,
    /// Failed; retry on the schedule, but not sooner than `retry_after` if given.
    Retry {
        /// The receiver's `Retry-After`, when honoured (429/502/504), capped at [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    /// 410 Gone: fail the delivery and disable the endpoint now.
    Gone,
}

/// Classifies an HTTP answer. `retry_after` is the raw header value, if any.
pub fn classify(status: u16, retry_after: Option<&str>, now: OffsetDateTime) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        410 => Verdict::Gone,
        429 | 502 | 504 => Verdict::Retry {
            retry_after: retry_after
                .and_then(|v| parse_retry_after(v, now))
                .map(|d| d.min(MAX_RETRY_AFTER)),
        },
        _ => Verdict::Retry { retry_after: None },
    }
}

const IMF_FIXDATE: &[FormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Parses `Retry-After` as delay-seconds or an HTTP-date (IMF-fixdate, RFC 9110 §10.2.3).
/// A date in the past means "now" (zero); garbage means "no hint".
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = time::PrimitiveDateTime::parse(value, IMF_FIXDATE)
        .ok()?
        .assume_utc();
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn default_schedule_is_svix_and_runs_out() {
        let s = RetrySchedule::new(RetrySchedule::default().delays().to_vec(), 0.0);
        assert_eq!(s.max_attempts(), 8);
        assert_eq!(s.next_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(s.next_delay(2), Some(Duration::from_secs(300)));
        assert_eq!(s.next_delay(7), Some(Duration::from_secs(36000)));
        assert_eq!(s.next_delay(8), None);
    }

    #[test]
    fn jitter_stays_within_bounds_and_spares_zero() {
        let s = RetrySchedule::new(vec![Duration::ZERO, Duration::from_secs(100)], 0.2);
        for _ in 0..200 {
            let d = s.next_delay(1).unwrap();
            assert!(
                d >= Duration::from_secs(80) && d <= Duration::from_secs(120),
                "{d:?}"
            );
            assert_eq!(s.next_delay(0), Some(Duration::ZERO));
        }
    }

    #[test]
    fn classification_follows_the_rules() {
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(classify(200, None, now), Verdict::Success);
        assert_eq!(classify(204, None, now), Verdict::Success);
        assert_eq!(
            classify(301, None, now),
            Verdict::Retry { retry_after: None }
        );
        assert_eq!(classify(410, None, now), Verdict::Gone);
        assert_eq!(
            classify(500, Some("5"), now),
            Verdict::Retry { retry_after: None }
        );
        for status in [429, 502, 504] {
            assert_eq!(
                classify(status, Some("2"), now),
                Verdict::Retry {
                    retry_after: Some(Duration::from_secs(2))
                }
            );
        }
        assert_eq!(
            classify(429, Some("99999999"), now),
            Verdict::Retry {
                retry_after: Some(MAX_RETRY_AFTER)
            }
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = datetime!(2015-10-21 07:28:00 UTC);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
