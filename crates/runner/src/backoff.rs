//! Restart delays for a camera that failed: a schedule that grows to a cap
//! (default 1 s, 5 s, 10 s, then 60 s), each step shaken by jitter so that
//! cameras which went down together (a switch reboot) do not all knock at
//! once. Pure: the caller supplies the random number.

use std::time::Duration;

/// The delays before each restart.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    steps: Vec<Duration>,
    /// Fraction of each delay added or removed at random (0.2: ±20 %).
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new([1, 5, 10, 60].map(Duration::from_secs).to_vec(), 0.2).expect("valid default")
    }
}

impl Backoff {
    /// `steps` must not be empty; the last one repeats forever. `jitter`
    /// must be in 0..1.
    pub fn new(steps: Vec<Duration>, jitter: f64) -> Option<Self> {
        if steps.is_empty() || !(0.0..1.0).contains(&jitter) {
            return None;
        }
        Some(Self { steps, jitter })
    }

    /// The delay before restart number `attempt` (0 for the first restart
    /// after a failure), with `unit` a random number in 0..1.
    pub fn delay(&self, attempt: usize, unit: f64) -> Duration {
        let base = self.steps[attempt.min(self.steps.len() - 1)];
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor)
    }

    /// The longest delay any attempt can have (the last step with full
    /// jitter): how long a recovered camera can take to be tried again.
    pub fn max_delay(&self) -> Duration {
        self.steps
            .iter()
            .max()
            .expect("not empty")
            .mul_f64(1.0 + self.jitter)
    }
}

/// A cheap random number in 0..1 for jitter (not for anything secret).
pub fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64,
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_stays_there() {
        let b = Backoff::default();
        let secs: Vec<f64> = (0..6).map(|a| b.delay(a, 0.5).as_secs_f64()).collect();
        assert_eq!(secs, [1.0, 5.0, 10.0, 60.0, 60.0, 60.0]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(800));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(1200));
        assert_eq!(b.max_delay(), Duration::from_secs(72));
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Backoff::new(vec![], 0.1).is_none());
        assert!(Backoff::new(vec![Duration::from_secs(1)], 1.0).is_none());
    }
}
