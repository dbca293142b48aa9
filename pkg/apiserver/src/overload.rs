//! Overload protection: at most so many requests in flight (reads and writes counted apart,
//! kube-apiserver's --max-requests-inflight 400 and --max-mutating-requests-inflight 200),
//! and no user holding more than half of either. A request that finds no seat waits in its
//! user's queue (at most 50 long, at most 5 s), and freed seats go to the waiting users in
//! turn, so one noisy client cannot starve the others (API Priority and Fairness' fair
//! queueing, one flow per user). A full queue or a long wait is answered 429 with
//! Retry-After. Long-running requests (watches, streams, proxies) are not counted, as in
//! kube-apiserver.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::authn::UserInfo;
use crate::status::json_response;

/// Requests one user may have waiting for a seat; more are refused at once.
const QUEUE_LENGTH: usize = 50;

/// How long a request waits for a seat before it is refused.
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Default)]
struct Seats {
    used: usize,
    per_user: HashMap<String, usize>,
    /// Each user's waiting requests, oldest first: (ticket, wake-up).
    waiting: BTreeMap<String, VecDeque<(u64, oneshot::Sender<()>)>>,
    /// The user served last, for round-robin.
    last: Option<String>,
    tickets: u64,
}

/// One kind of request's seats.
struct Pool {
    max: usize,
    per_user: usize,
    state: Mutex<Seats>,
}

impl Pool {
    fn new(max: usize) -> Self {
        Pool {
            max,
            per_user: (max / 2).max(1),
            state: Mutex::new(Seats::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seats> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fits(&self, st: &Seats, user: &str) -> bool {
        st.used < self.max && st.per_user.get(user).copied().unwrap_or(0) < self.per_user
    }

    fn seat(self: &Arc<Self>, st: &mut Seats, user: &str) -> Seat {
        st.used += 1;
        *st.per_user.entry(user.to_string()).or_insert(0) += 1;
        Seat {
            pool: self.clone(),
            user: user.to_string(),
        }
    }

    /// A seat now, if one is free for `user` and nobody of theirs is waiting.
    #[cfg(test)]
    fn take(self: &Arc<Self>, user: &str) -> Option<Seat> {
        let mut st = self.lock();
        let queued = st.waiting.get(user).is_some_and(|q| !q.is_empty());
        (!queued && self.fits(&st, user)).then(|| self.seat(&mut st, user))
    }

    /// A seat, waiting in `user`'s queue for one when none is free; None when the queue
    /// is full or the wait is too long.
    async fn acquire(self: &Arc<Self>, user: &str) -> Option<Seat> {
        let (ticket, rx) = {
            let mut st = self.lock();
            let queued = st.waiting.get(user).map_or(0, VecDeque::len);
            if queued == 0 && self.fits(&st, user) {
                return Some(self.seat(&mut st, user));
            }
            if queued >= QUEUE_LENGTH {
                return None;
            }
            st.tickets += 1;
            let ticket = st.tickets;
            let (tx, rx) = oneshot::channel();
            st.waiting
                .entry(user.to_string())
                .or_default()
                .push_back((ticket, tx));
            (ticket, rx)
        };
        let granted = Seat {
            pool: self.clone(),
            user: user.to_string(),
        };
        if let Ok(Ok(())) = tokio::time::timeout(QUEUE_WAIT, rx).await {
            return Some(granted);
        }
        // Gave up: leave the queue, unless a seat was handed over meanwhile.
        let mut st = self.lock();
        let q = st.waiting.get_mut(user);
        match q.and_then(|q| {
            q.iter()
                .position(|(t, _)| *t == ticket)
                .map(|i| q.remove(i))
        }) {
            Some(_) => {
                std::mem::forget(granted);
                None
            }
            None => Some(granted),
        }
    }

    /// Hand free seats to waiting requests, one user after another.
    fn dispatch(self: &Arc<Self>, st: &mut Seats) {
        while st.used < self.max {
            let users: Vec<String> = st
                .waiting
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(u, _)| u.clone())
                .collect();
            let after = |u: &String| st.last.as_ref().is_some_and(|l| u > l);
            let order = users
                .iter()
                .filter(|u| after(u))
                .chain(users.iter().filter(|u| !after(u)));
            let Some(next) = order.into_iter().find(|u| self.fits(st, u)).cloned() else {
                return;
            };
            let Some((_, tx)) = st.waiting.get_mut(&next).and_then(VecDeque::pop_front) else {
                return;
            };
            st.used += 1;
            *st.per_user.entry(next.clone()).or_insert(0) += 1;
            if tx.send(()).is_err() {
                release(st, &next);
            }
            st.last = Some(next);
        }
    }
}

fn release(st: &mut Seats, user: &str) {
    st.used = st.used.saturating_sub(1);
    if let Some(n) = st.per_user.get_mut(user) {
        *n -= 1;
        if *n == 0 {
            st.per_user.remove(user);
        }
    }
}

/// A request's place in a pool, given back (to the next in line) when the response is done.
struct Seat {
    pool: Arc<Pool>,
    user: String,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        let mut st = pool.lock();
        release(&mut st, &self.user);
        pool.dispatch(&mut st);
        st.waiting.retain(|_, q| !q.is_empty());
    }
}

/// The limits of one server.
#[derive(Clone)]
pub struct Limits {
    reads: Arc<Pool>,
    writes: Arc<Pool>,
}

impl Limits {
    pub fn new(reads: usize, writes: usize) -> Self {
        Limits {
            reads: Arc::new(Pool::new(reads)),
            writes: Arc::new(Pool::new(writes)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(400, 200)
    }
}

/// Watches, logs, exec/attach/port-forward and proxies stay open: they hold no seat.
fn long_running(req: &Request) -> bool {
    let q = req.uri().query().unwrap_or("");
    let path = req.uri().path();
    q.split('&')
        .any(|p| p == "watch=true" || p == "watch=1" || p == "follow=true")
        || ["/exec", "/attach", "/portforward", "/proxy"]
            .iter()
            .any(|s| path.ends_with(s) || path.contains(&format!("{s}/")))
}

fn too_many() -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 1}, "code": 429});
    let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, &body, &[]).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if long_running(&req) {
        return next.run(req).await;
    }
    let user = req
        .extensions()
        .get::<UserInfo>()
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let pool = match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => &state.limits.reads,
        _ => &state.limits.writes,
    };
    let Some(seat) = pool.acquire(&user).await else {
        return too_many();
    };
    let resp = next.run(req).await;
    drop(seat);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_cannot_take_every_seat() {
        let limits = Limits::new(4, 2);
        let a: Vec<Seat> = (0..2).filter_map(|_| limits.reads.take("a")).collect();
        assert_eq!(a.len(), 2);
        assert!(limits.reads.take("a").is_none(), "a holds half");
        let b1 = limits.reads.take("b").expect("b is still served");
        let b2 = limits.reads.take("b").expect("b is still served");
        assert!(limits.reads.take("c").is_none(), "all seats taken");
        drop((b1, b2));
        assert!(limits.reads.take("c").is_some(), "seats come back");
        drop(a);
    }

    #[tokio::test]
    async fn waiting_users_are_served_in_turn() {
        let limits = Limits::new(2, 2);
        let pool = limits.reads.clone();
        let a = pool.acquire("a").await.expect("a seat");
        let b = pool.acquire("b").await.expect("b seat");
        // Both seats taken: a2 and c wait; when b's seat frees, the first waiting user in
        // turn whose share allows it (c, as a already holds its half) gets it.
        let (p1, p2) = (pool.clone(), pool.clone());
        let a2 = tokio::spawn(async move { p1.acquire("a").await.map(|s| s.user.clone()) });
        let c = tokio::spawn(async move { p2.acquire("c").await.map(|s| s.user.clone()) });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(b);
        assert_eq!(c.await.unwrap().as_deref(), Some("c"));
        drop(a);
        assert_eq!(a2.await.unwrap().as_deref(), Some("a"));
    }
}
