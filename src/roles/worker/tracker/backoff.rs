//! How long a worker waits before retrying a tracker that could not take an event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, 1 s * 2^n)],
/// so many workers recovering together do not hit the tracker in step.
pub struct Backoff {
    attempt: u32,
    cap: Duration,
    state: u64,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            attempt: 0,
            cap,
            state: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The upper bound of the next wait, before jitter.
    pub fn ceiling(&self) -> Duration {
        let exp = Duration::from_secs(1).saturating_mul(1u32 << self.attempt.min(30));
        exp.min(self.cap)
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*: plenty for jitter, no dependency.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c);
                c.as_secs()
            })
            .collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the waits"
        );
    }
}
