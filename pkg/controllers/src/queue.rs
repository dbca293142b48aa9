//! A rate-limited work queue as client-go's: a key is queued once however often it is added,
//! is never worked on by two workers at once (added while in progress, it comes back after),
//! and a failing key comes back after an exponential back-off (5 ms doubling to 1000 s),
//! reset when it succeeds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::Metrics;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    stopped: bool,
}

/// A named queue of object keys ("namespace/name" or "name").
#[derive(Clone)]
pub struct Queue {
    name: &'static str,
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
    metrics: Metrics,
}

const BASE: Duration = Duration::from_millis(5);
const MAX: Duration = Duration::from_secs(1000);

impl Queue {
    pub fn new(name: &'static str, metrics: Metrics) -> Self {
        Queue {
            name,
            state: Arc::default(),
            ready: Arc::new(Notify::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `key` unless it is queued already.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.lock();
        if s.stopped || !s.dirty.insert(key.clone()) {
            return;
        }
        self.metrics.added(self.name);
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            self.metrics.depth(self.name, s.queue.len());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Queue `key` after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Queue `key` again after its back-off, which doubles with each failure.
    pub fn add_rate_limited(&self, key: impl Into<String>) {
        let key = key.into();
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.metrics.retried(self.name);
        self.add_after(key, backoff(n));
    }

    /// The key succeeded: its back-off starts over.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// The next key to work on; None once the queue is shut down and empty.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    self.metrics.depth(self.name, s.queue.len());
                    return Some(key);
                }
                if s.stopped {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Work on `key` is over; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &str) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            self.metrics.depth(self.name, s.queue.len());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Stop handing out keys; waiting workers return None.
    pub fn shut_down(&self) {
        self.lock().stopped = true;
        self.ready.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn backoff(failures: u32) -> Duration {
    BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(30))
        .min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_worked_on_twice() {
        let q = Queue::new("test", Metrics::default());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await.unwrap();
        assert_eq!(a, "a");
        // Added while in progress: held back until done.
        q.add("a");
        assert_eq!(q.get().await.unwrap(), "b");
        assert!(q.is_empty());
        q.done("a");
        assert_eq!(q.get().await.unwrap(), "a");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(4), Duration::from_millis(40));
        assert_eq!(backoff(40), MAX);
    }

    #[tokio::test]
    async fn shutting_down_releases_waiting_workers() {
        let q = Queue::new("test", Metrics::default());
        let w = {
            let q = q.clone();
            tokio::spawn(async move { q.get().await })
        };
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(w.await.unwrap(), None);
    }
}
