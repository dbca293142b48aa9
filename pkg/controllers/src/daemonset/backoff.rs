//! The back-off between replacing failed daemon pods on one node (client-go's flowcontrol
//! Backoff as the DaemonSet controller uses it: 1 s doubling to 15 min, forgotten after
//! twice the maximum without failures), so a kubelet that keeps rejecting a daemon is not
//! fought in a hot loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INITIAL: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, (Instant, Duration)>>);

impl Backoff {
    /// How long `key` still waits, if it does.
    pub fn remaining(&self, key: &str) -> Option<Duration> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (at, delay) = map.get(key)?;
        (*at + *delay).checked_duration_since(Instant::now())
    }

    /// `key` failed again: wait twice as long as last time (or the initial delay).
    pub fn next(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (at, _)| now.duration_since(*at) < 2 * MAX);
        let delay = map
            .get(key)
            .map_or(INITIAL, |(_, d)| d.saturating_mul(2).min(MAX));
        map.insert(key.to_string(), (now, delay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_key() {
        let b = Backoff::default();
        assert_eq!(b.remaining("a"), None);
        b.next("a");
        assert!(b.remaining("a").is_some_and(|d| d <= INITIAL));
        b.next("a");
        assert!(
            b.remaining("a")
                .is_some_and(|d| d > INITIAL && d <= 2 * INITIAL)
        );
        assert_eq!(b.remaining("b"), None);
    }
}
