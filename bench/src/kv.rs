//! The two stores behind one small trait: minik's store in process (as the API server uses
//! it) and etcd over gRPC on loopback (as kube-apiserver uses it).

use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions,
};
use hdrhistogram::Histogram;
use minik_store::Backend;
use tokio::task::JoinHandle;

/// Latency of a delivered value stamped by the writer: nanoseconds from the write being
/// issued (its first 8 bytes hold `now_ns()` then) to the event reaching the watcher.
fn latency(value: &[u8]) -> u64 {
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&value[..8]);
    crate::workloads::now_ns()
        .saturating_sub(u64::from_le_bytes(stamp))
        .max(1)
}

/// Record latencies until `count` events arrived (or the stream ended).
struct Collector {
    hist: Histogram<u64>,
    left: u64,
}

impl Collector {
    fn new(count: u64) -> Self {
        Collector {
            hist: Histogram::new(3).expect("histogram"),
            left: count,
        }
    }

    /// Record one event; false once all are in.
    fn record(&mut self, value: &[u8]) -> bool {
        self.hist.record(latency(value)).expect("record");
        self.left -= 1;
        self.left > 0
    }
}

#[async_trait]
pub trait Kv: Clone + Send + Sync + 'static {
    /// Create; returns the revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> i64;
    /// CAS update; returns the new revision, or None on conflict.
    async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> Option<i64>;
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Number of keys listed under `prefix` (values fetched).
    async fn list(&self, prefix: &str) -> usize;
    /// Watch `prefix` from now; the task ends with the latencies of the next `count` events.
    async fn watch(&self, prefix: &str, count: u64) -> JoinHandle<Histogram<u64>>;
    async fn current_revision(&self) -> i64;
    /// Compact to the current revision and give space back where the store does that itself.
    async fn compact(&self);
}

#[derive(Clone)]
pub struct Minik(pub Arc<dyn Backend>);

#[async_trait]
impl Kv for Minik {
    async fn create(&self, key: &str, value: Vec<u8>) -> i64 {
        self.0
            .create(key, value)
            .await
            .expect("create")
            .mod_revision
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> Option<i64> {
        match self.0.update(key, value, expected).await {
            Ok(kv) => Some(kv.mod_revision),
            Err(minik_store::Error::Conflict { .. }) => None,
            Err(e) => panic!("update: {e}"),
        }
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let (_, kv) = self.0.get(key, None).await.expect("get");
        kv.map(|kv| kv.value.to_vec())
    }

    async fn list(&self, prefix: &str) -> usize {
        let r = self.0.list(prefix, Default::default()).await.expect("list");
        r.kvs.len()
    }

    async fn watch(&self, prefix: &str, count: u64) -> JoinHandle<Histogram<u64>> {
        let mut w = self.0.watch(prefix, 0).await.expect("watch");
        tokio::spawn(async move {
            let mut c = Collector::new(count);
            while let Some(Ok(e)) = w.recv().await {
                if !c.record(&e.kv.value) {
                    break;
                }
            }
            c.hist
        })
    }

    async fn current_revision(&self) -> i64 {
        self.0.current_revision().await.expect("revision")
    }

    async fn compact(&self) {
        let rev = self.current_revision().await;
        self.0.compact(rev).await.expect("compact");
    }
}

#[derive(Clone)]
pub struct Etcd(pub Client);

#[async_trait]
impl Kv for Etcd {
    async fn create(&self, key: &str, value: Vec<u8>) -> i64 {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let r = self.0.clone().txn(txn).await.expect("etcd txn");
        assert!(r.succeeded(), "etcd create of existing {key}");
        r.header().expect("header").revision()
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> Option<i64> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)]);
        let r = self.0.clone().txn(txn).await.expect("etcd txn");
        r.succeeded()
            .then(|| r.header().expect("header").revision())
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let r = self.0.clone().get(key, None).await.expect("etcd get");
        r.kvs().first().map(|kv| kv.value().to_vec())
    }

    async fn list(&self, prefix: &str) -> usize {
        // 10,000 values of 1 KiB are over the client's default 4 MiB response limit.
        let r = self
            .0
            .kv_client()
            .max_decoding_message_size(256 << 20)
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .expect("etcd range");
        r.kvs().len()
    }

    async fn watch(&self, prefix: &str, count: u64) -> JoinHandle<Histogram<u64>> {
        let mut w = self
            .0
            .clone()
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await
            .expect("etcd watch");
        tokio::spawn(async move {
            let mut c = Collector::new(count);
            while let Ok(Some(resp)) = w.message().await {
                for e in resp.events() {
                    if let Some(kv) = e.kv()
                        && !c.record(kv.value())
                    {
                        return c.hist;
                    }
                }
            }
            c.hist
        })
    }

    async fn current_revision(&self) -> i64 {
        let r = self.0.clone().get("/", None).await.expect("etcd get");
        r.header().expect("header").revision()
    }

    async fn compact(&self) {
        let rev = self.current_revision().await;
        self.0
            .clone()
            .compact(rev, Some(CompactionOptions::new().with_physical()))
            .await
            .expect("etcd compact");
    }
}
