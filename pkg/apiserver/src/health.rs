//! /healthz, /livez, /readyz with `?verbose` and per-check paths.

use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;

const CHECKS: &[&str] = &[
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiextensions-informers",
];

async fn results(state: &AppState) -> Vec<(&'static str, bool)> {
    let store_ok = state.registry.store().current_revision().await.is_ok();
    let started = state.started.load(Ordering::Acquire);
    CHECKS
        .iter()
        .map(|c| {
            let ok = match *c {
                "etcd" => store_ok,
                "ping" | "log" => true,
                _ => started,
            };
            (*c, ok)
        })
        .collect()
}

#[derive(serde::Deserialize)]
pub struct HealthQuery {
    verbose: Option<String>,
}

pub async fn check(State(state): State<AppState>, Query(q): Query<HealthQuery>) -> Response {
    let results = results(&state).await;
    let healthy = results.iter().all(|(_, ok)| *ok);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if q.verbose.is_none() && healthy {
        return (code, "ok").into_response();
    }
    let mut text = String::new();
    for (name, ok) in &results {
        text.push_str(&format!(
            "[{}]{name} {}\n",
            if *ok { "+" } else { "-" },
            if *ok { "ok" } else { "failed: reason withheld" }
        ));
    }
    text.push_str(if healthy {
        "healthz check passed\n"
    } else {
        "healthz check failed\n"
    });
    (code, text).into_response()
}

pub async fn one(State(state): State<AppState>, Path(check): Path<String>) -> Response {
    let results = results(&state).await;
    match results.iter().find(|(n, _)| *n == check) {
        Some((_, true)) => (StatusCode::OK, "ok").into_response(),
        Some((_, false)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
        }
        None => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}
