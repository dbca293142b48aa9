//! The scheduling queue, as kube-scheduler's: an active queue ordered by priority then age,
//! a back-off queue for pods that failed (1 s doubling to 10 s), and the unschedulable pods,
//! which go back to work on cluster events (a node added or changed, a pod gone) or after
//! five minutes.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const UNSCHEDULABLE_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    priority: i32,
    seq: u64,
    key: String,
}

impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Default)]
struct State {
    active: BinaryHeap<Entry>,
    queued: HashSet<String>,
    in_flight: HashSet<String>,
    /// In flight when the cluster changed: if found unschedulable, retried after back-off
    /// rather than left waiting for a next change (kube-scheduler's in-flight events).
    moved_in_flight: HashSet<String>,
    /// Added again while in flight: queue after it is done.
    again: HashMap<String, i32>,
    backoff: HashMap<String, (Instant, i32)>,
    unschedulable: HashMap<String, (Instant, i32)>,
    attempts: HashMap<String, u32>,
    seq: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Scheduled,
    Unschedulable,
    Error,
}

#[derive(Clone, Default)]
pub struct SchedulingQueue {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
}

impl SchedulingQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, s: &mut State, key: String, priority: i32) {
        if s.queued.insert(key.clone()) {
            s.seq += 1;
            let seq = s.seq;
            s.active.push(Entry { priority, seq, key });
            self.ready.notify_one();
        }
    }

    /// A pending pod was added or changed: to the active queue (an unschedulable pod that
    /// changed gets another try).
    pub fn add(&self, key: String, priority: i32) {
        let mut s = self.lock();
        if s.in_flight.contains(&key) {
            s.again.insert(key, priority);
            return;
        }
        if s.backoff.contains_key(&key) {
            return;
        }
        s.unschedulable.remove(&key);
        self.push(&mut s, key, priority);
    }

    /// The pod is gone or bound elsewhere: forget it.
    pub fn remove(&self, key: &str) {
        let mut s = self.lock();
        s.queued.remove(key);
        s.backoff.remove(key);
        s.unschedulable.remove(key);
        s.attempts.remove(key);
        s.again.remove(key);
    }

    /// The next pod to schedule (highest priority, oldest first).
    pub async fn pop(&self) -> String {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                while let Some(e) = s.active.pop() {
                    if s.queued.remove(&e.key) {
                        s.in_flight.insert(e.key.clone());
                        return e.key;
                    }
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &str, outcome: Outcome, priority: i32) {
        let mut s = self.lock();
        s.in_flight.remove(key);
        let moved = s.moved_in_flight.remove(key);
        if let Some(p) = s.again.remove(key) {
            if outcome != Outcome::Scheduled {
                self.push(&mut s, key.to_string(), p);
            }
            return;
        }
        match outcome {
            Outcome::Scheduled => {
                s.attempts.remove(key);
            }
            Outcome::Unschedulable => {
                let n = s.attempts.entry(key.to_string()).or_default();
                *n += 1;
                if moved {
                    let delay = backoff(*n);
                    s.backoff
                        .insert(key.to_string(), (Instant::now() + delay, priority));
                } else {
                    s.unschedulable
                        .insert(key.to_string(), (Instant::now(), priority));
                }
            }
            Outcome::Error => {
                let n = s.attempts.entry(key.to_string()).or_default();
                *n += 1;
                let delay = backoff(*n);
                s.backoff
                    .insert(key.to_string(), (Instant::now() + delay, priority));
            }
        }
    }

    /// Something changed that may make unschedulable pods fit: retry them (after their
    /// back-off).
    pub fn move_all(&self) {
        let mut s = self.lock();
        let flying: Vec<String> = s.in_flight.iter().cloned().collect();
        s.moved_in_flight.extend(flying);
        let moved: Vec<(String, (Instant, i32))> = s.unschedulable.drain().collect();
        for (key, (_, priority)) in moved {
            let n = s.attempts.get(&key).copied().unwrap_or(1);
            s.backoff
                .insert(key, (Instant::now() + backoff(n), priority));
        }
    }

    /// Move pods whose back-off is over, and long-unschedulable ones, to the active queue.
    pub fn flush(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        let due: Vec<(String, i32)> = s
            .backoff
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, (_, p))| (k.clone(), *p))
            .collect();
        for (k, p) in due {
            s.backoff.remove(&k);
            self.push(&mut s, k, p);
        }
        let stale: Vec<(String, i32)> = s
            .unschedulable
            .iter()
            .filter(|(_, (since, _))| since.elapsed() > UNSCHEDULABLE_MAX)
            .map(|(k, (_, p))| (k.clone(), *p))
            .collect();
        for (k, p) in stale {
            s.unschedulable.remove(&k);
            self.push(&mut s, k, p);
        }
    }

    /// (active, backoff, unschedulable) sizes.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let s = self.lock();
        (s.queued.len(), s.backoff.len(), s.unschedulable.len())
    }
}

fn backoff(attempts: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1 << attempts.saturating_sub(1).min(10))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn higher_priority_first_then_oldest() {
        let q = SchedulingQueue::default();
        q.add("a".into(), 0);
        q.add("b".into(), 10);
        q.add("c".into(), 0);
        assert_eq!(q.pop().await, "b");
        assert_eq!(q.pop().await, "a");
        assert_eq!(q.pop().await, "c");
    }

    #[tokio::test]
    async fn unschedulable_pods_wait_for_an_event() {
        let q = SchedulingQueue::default();
        q.add("a".into(), 0);
        let k = q.pop().await;
        q.done(&k, Outcome::Unschedulable, 0);
        assert_eq!(q.sizes(), (0, 0, 1));
        q.move_all();
        assert_eq!(q.sizes(), (0, 1, 0));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(9), BACKOFF_MAX);
    }

    #[tokio::test]
    async fn a_change_during_the_attempt_is_not_missed() {
        let q = SchedulingQueue::default();
        q.add("a".into(), 0);
        let k = q.pop().await;
        // The cluster changed while "a" was being tried: it does not wait for another change.
        q.move_all();
        q.done(&k, Outcome::Unschedulable, 0);
        assert_eq!(q.sizes(), (0, 1, 0));
        q.add("b".into(), 0);
        let k = q.pop().await;
        q.done(&k, Outcome::Unschedulable, 0);
        assert_eq!(q.sizes(), (0, 1, 1));
    }
}
