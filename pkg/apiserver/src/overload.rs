//! Overload protection: at most so many requests in flight (reads and writes counted apart,
//! kube-apiserver's --max-requests-inflight 400 and --max-mutating-requests-inflight 200),
//! and no user holding more than half of either, so one noisy client cannot starve the
//! others. Over a limit a request is answered 429 with Retry-After at once. Long-running
//! requests (watches, streams, proxies) are not counted, as in kube-apiserver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::authn::UserInfo;
use crate::status::json_response;

/// One kind of request's seats.
struct Pool {
    max: usize,
    per_user: usize,
    used: Mutex<(usize, HashMap<String, usize>)>,
}

impl Pool {
    fn new(max: usize) -> Self {
        Pool {
            max,
            per_user: (max / 2).max(1),
            used: Mutex::new((0, HashMap::new())),
        }
    }

    fn take(self: &Arc<Self>, user: &str) -> Option<Seat> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mine = used.1.get(user).copied().unwrap_or(0);
        if used.0 >= self.max || mine >= self.per_user {
            return None;
        }
        used.0 += 1;
        used.1.insert(user.to_string(), mine + 1);
        Some(Seat {
            pool: self.clone(),
            user: user.to_string(),
        })
    }
}

/// A request's place in a pool, given back when the response is done.
struct Seat {
    pool: Arc<Pool>,
    user: String,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut used = self.pool.used.lock().unwrap_or_else(|e| e.into_inner());
        used.0 = used.0.saturating_sub(1);
        if let Some(n) = used.1.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                used.1.remove(&self.user);
            }
        }
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
    let Some(seat) = pool.take(&user) else {
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
}
