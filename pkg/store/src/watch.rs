//! The watch hub and watch streams.
//!
//! The single writer publishes every committed batch here. Live watchers get batches through
//! a bounded broadcast ring (never from the database); a watcher that falls more than the
//! ring's length behind is ended with `WatcherTooSlow`. A new watcher catches up from a ring
//! of recent events, or, for older revisions, from the engine's history before going live.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::types::{Event, KeyRange};

type Batch = Arc<[Event]>;

/// How many events a history read fetches at once.
const HISTORY_PAGE: usize = 1000;

struct HubState {
    tx: Option<broadcast::Sender<Batch>>,
    recent: VecDeque<Event>,
    recent_bytes: usize,
    /// Newest revision published.
    published: i64,
}

/// Fans committed events out to watchers.
pub(crate) struct Hub {
    buffer: usize,
    state: Mutex<HubState>,
    recent_max_events: usize,
    recent_max_bytes: usize,
}

/// What a new watcher starts from.
pub(crate) struct Subscription {
    pub rx: broadcast::Receiver<Batch>,
    /// Newest revision published when the watcher subscribed.
    pub published: i64,
    /// First revision to deliver (a start of 0 resolved to `published + 1`).
    pub start: i64,
    /// Oldest revision the recent ring still has (published + 1 when empty).
    pub ring_start: i64,
    /// Events of the ring at or after the watch's start, in the watch's range.
    pub ring: VecDeque<Event>,
}

impl Hub {
    pub fn new(buffer: usize, recent_events: usize, published: i64) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Hub {
            buffer: buffer.max(1),
            state: Mutex::new(HubState {
                tx: Some(tx),
                recent: VecDeque::new(),
                recent_bytes: 0,
                published,
            }),
            recent_max_events: recent_events,
            recent_max_bytes: 32 << 20,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publish a committed batch (events in revision order).
    pub fn publish(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(Event::revision) else {
            return;
        };
        let mut s = self.lock();
        for e in &events {
            s.recent_bytes += event_bytes(e);
            s.recent.push_back(e.clone());
        }
        while s.recent.len() > self.recent_max_events || s.recent_bytes > self.recent_max_bytes {
            match s.recent.pop_front() {
                Some(e) => s.recent_bytes -= event_bytes(&e),
                None => break,
            }
        }
        s.published = last;
        if let Some(tx) = &s.tx {
            // No receivers is fine: nobody is watching.
            let _ = tx.send(Arc::from(events));
        }
    }

    /// Subscribe; returns `Closed` after `close`.
    pub fn subscribe(&self, range: &KeyRange, start: i64) -> Result<Subscription> {
        let s = self.lock();
        let rx = s.tx.as_ref().ok_or(Error::Closed)?.subscribe();
        let start = if start == 0 { s.published + 1 } else { start };
        let ring_start = s.recent.front().map_or(s.published + 1, Event::revision);
        let ring = s
            .recent
            .iter()
            .filter(|e| e.revision() >= start && range.contains(&e.kv.key))
            .cloned()
            .collect();
        Ok(Subscription {
            rx,
            published: s.published,
            start,
            ring_start,
            ring,
        })
    }

    /// End every current watch and forget recent events: after a commit whose outcome is
    /// unknown, watchers cannot be sure to see every event, so their clients must re-watch
    /// (catching up from the database).
    pub fn reset(&self, published: i64) {
        let mut s = self.lock();
        if let Some(tx) = &mut s.tx {
            *tx = broadcast::channel(self.buffer).0;
        }
        s.recent.clear();
        s.recent_bytes = 0;
        s.published = published;
    }

    /// End every watch.
    pub fn close(&self) {
        self.lock().tx = None;
    }
}

fn event_bytes(e: &Event) -> usize {
    64 + e.kv.key.len() + e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len())
}

/// Reads history from the engine for a watcher that starts before the recent ring.
struct HistoryCursor {
    engine: Arc<dyn Engine>,
    compacted: Arc<AtomicI64>,
    next: i64,
    /// Last revision to read from history (inclusive).
    to: i64,
}

/// A stream of events under one prefix, in commit order, without gaps or duplicates.
pub struct WatchStream {
    range: KeyRange,
    pending: VecDeque<Event>,
    history: Option<HistoryCursor>,
    ring: VecDeque<Event>,
    rx: broadcast::Receiver<Batch>,
    /// Revision of the last event delivered (start - 1 before the first).
    last: i64,
    /// Newest revision of a live batch looked at: every event up to it is delivered or
    /// pending (what `recv_progress` reports).
    seen: i64,
    done: bool,
}

/// What `recv_progress` yields.
#[derive(Debug)]
pub enum Progress {
    Event(Event),
    /// Nothing in range up to this revision that has not been delivered.
    UpTo(i64),
}

impl WatchStream {
    pub(crate) fn new(
        range: KeyRange,
        sub: Subscription,
        engine: Arc<dyn Engine>,
        compacted: Arc<AtomicI64>,
    ) -> Self {
        let start = sub.start;
        let history = (start < sub.ring_start && start <= sub.published).then(|| HistoryCursor {
            engine,
            compacted,
            next: start,
            to: sub.ring_start.min(sub.published + 1) - 1,
        });
        WatchStream {
            range,
            pending: VecDeque::new(),
            history,
            ring: sub.ring,
            rx: sub.rx,
            last: start - 1,
            // The history and ring cover everything up to what was published.
            seen: sub.published.max(start - 1),
            done: false,
        }
    }

    /// Like `recv`, but also reports progress: after a committed batch with nothing in
    /// range, `UpTo(revision)` (so a cache knows it is current up to there).
    pub async fn recv_progress(&mut self) -> Option<Result<Progress>> {
        if self.done {
            return None;
        }
        let item = self.next_item(true).await;
        match &item {
            Some(Ok(Progress::Event(e))) => self.last = e.revision(),
            Some(Ok(Progress::UpTo(_))) => {}
            _ => self.done = true,
        }
        item
    }

    /// The next event; `None` once the store is closed. After an error the stream ends.
    pub async fn recv(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        let item = loop {
            match self.next_item(false).await {
                Some(Ok(Progress::UpTo(_))) => continue,
                Some(Ok(Progress::Event(e))) => break Some(Ok(e)),
                Some(Err(e)) => break Some(Err(e)),
                None => break None,
            }
        };
        match &item {
            Some(Ok(e)) => self.last = e.revision(),
            _ => self.done = true,
        }
        item
    }

    async fn next_item(&mut self, progress: bool) -> Option<Result<Progress>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(Progress::Event(e)));
            }
            if progress && self.history.is_none() && self.ring.is_empty() && self.seen > self.last {
                self.last = self.seen;
                return Some(Ok(Progress::UpTo(self.seen)));
            }
            if let Some(h) = &mut self.history {
                if h.next > h.to {
                    self.history = None;
                    continue;
                }
                let page = match h
                    .engine
                    .history(&self.range, h.next, h.to, HISTORY_PAGE)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return Some(Err(e)),
                };
                // Compaction records its revision before removing rows: if it has not
                // reached `next`, the page read is complete.
                let compacted = h.compacted.load(Ordering::Acquire);
                if compacted >= h.next {
                    return Some(Err(Error::Compacted {
                        requested: h.next,
                        compacted,
                    }));
                }
                h.next = match page.last() {
                    Some(e) if page.len() == HISTORY_PAGE => e.revision() + 1,
                    _ => h.to + 1,
                };
                self.pending.extend(page);
                continue;
            }
            if let Some(e) = self.ring.pop_front() {
                if e.revision() > self.last {
                    return Some(Ok(Progress::Event(e)));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    if let Some(newest) = batch.last().map(Event::revision) {
                        self.seen = self.seen.max(newest);
                    }
                    self.pending.extend(
                        batch
                            .iter()
                            .filter(|e| e.revision() > self.last && self.range.contains(&e.kv.key))
                            .cloned(),
                    )
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(Err(Error::WatcherTooSlow));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
