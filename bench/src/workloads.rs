//! The workloads, generic over the store. Each returns figures; nothing here prints.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::kv::Kv;

pub const VALUE_SIZE: usize = 1024;

/// Nanoseconds since the benchmark started (one clock for writers and watchers).
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A 1 KiB value whose first 8 bytes are the time it was made.
pub fn stamped_value() -> Vec<u8> {
    let mut v = vec![b'x'; VALUE_SIZE];
    v[..8].copy_from_slice(&now_ns().to_le_bytes());
    v
}

/// Durable creates per second with `writers` concurrent writers for `run`.
pub async fn creates_per_sec<K: Kv>(kv: &K, prefix: &str, writers: usize, run: Duration) -> f64 {
    let start = Instant::now();
    let deadline = start + run;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (kv, prefix) = (kv.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                kv.create(&format!("{prefix}{w}/{n}"), stamped_value())
                    .await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// CAS updates per second: each of `writers` read-modify-writes its own key.
pub async fn cas_per_sec<K: Kv>(kv: &K, prefix: &str, writers: usize, run: Duration) -> f64 {
    let mut revs = Vec::new();
    for w in 0..writers {
        revs.push(kv.create(&format!("{prefix}{w}"), stamped_value()).await);
    }
    let start = Instant::now();
    let deadline = start + run;
    let mut tasks = Vec::new();
    for (w, mut rev) in revs.into_iter().enumerate() {
        let (kv, key) = (kv.clone(), format!("{prefix}{w}"));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                rev = kv
                    .update(&key, stamped_value(), rev)
                    .await
                    .expect("no conflict on an own key");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Latency percentiles in microseconds of `n` sequential gets over existing keys.
pub async fn get_latency<K: Kv>(kv: &K, keys: &[(String, i64)], n: usize) -> (f64, f64) {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..n {
        let (key, _) = &keys[(i * 7919) % keys.len()];
        let t = Instant::now();
        assert!(kv.get(key).await.is_some(), "{key} exists");
        h.record(t.elapsed().as_nanos() as u64).expect("record");
    }
    (
        h.value_at_quantile(0.50) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
    )
}

/// Create `n` keys under `prefix` with 64 writers; returns their names and revisions.
pub async fn fill<K: Kv>(kv: &K, prefix: &str, n: usize) -> Vec<(String, i64)> {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:06}")).collect();
    let mut tasks = Vec::new();
    for chunk in keys.chunks(n.div_ceil(64)) {
        let (kv, chunk) = (kv.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for k in chunk {
                let rev = kv.create(&k, stamped_value()).await;
                out.push((k, rev));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("fill"));
    }
    all
}

/// Median milliseconds to list every key under `prefix` (5 runs).
pub async fn list_ms<K: Kv>(kv: &K, prefix: &str, expect: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(kv.list(prefix).await, expect);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[2]
}

/// Watch delivery with `watchers` watchers on one prefix while writes are issued at
/// `rate` per second for `run`.
pub struct WatchFigures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub delivered: u64,
    pub expected: u64,
}

pub async fn watch_latency<K: Kv>(
    kv: &K,
    prefix: &str,
    watchers: usize,
    rate: u64,
    run: Duration,
) -> WatchFigures {
    let writes = rate * run.as_secs();
    let mut collectors = Vec::new();
    for _ in 0..watchers {
        collectors.push(kv.watch(prefix, writes).await);
    }
    // Paced writer: one write every 1/rate s, each in its own task so a slow commit does not
    // slow the pace.
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    let mut writers = Vec::new();
    for i in 0..writes {
        tick.tick().await;
        let (kv, prefix) = (kv.clone(), prefix.to_string());
        writers.push(tokio::spawn(async move {
            kv.create(&format!("{prefix}{i}"), stamped_value()).await;
        }));
    }
    for w in writers {
        w.await.expect("write");
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for c in collectors {
        // Every watcher must see every write; give stragglers a bounded time.
        match tokio::time::timeout(Duration::from_secs(30), c).await {
            Ok(h) => all.add(h.expect("collector")).expect("merge"),
            Err(_) => eprintln!("  a watcher did not get all events in 30 s"),
        }
    }
    WatchFigures {
        p50_ms: all.value_at_quantile(0.50) as f64 / 1e6,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1e6,
        max_ms: all.max() as f64 / 1e6,
        delivered: all.len(),
        expected: writes * watchers as u64,
    }
}

/// `rounds` CAS updates of each of `keys` keys, 64 writers.
pub async fn update_rounds<K: Kv>(kv: &K, prefix: &str, keys: usize, rounds: usize) {
    let filled = fill(kv, prefix, keys).await;
    let mut tasks = Vec::new();
    for chunk in filled.chunks(keys.div_ceil(64)) {
        let (kv, mut chunk) = (kv.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                for (k, rev) in chunk.iter_mut() {
                    *rev = kv
                        .update(k, stamped_value(), *rev)
                        .await
                        .expect("no conflict on an own key");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("updates");
    }
}
