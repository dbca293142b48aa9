//! `make bench-store`: minik's store and etcd 3.4 under the same workloads in the same run.
//! BENCH_QUICK=1 shortens every phase (to check the harness, not for figures).

use std::path::{Path, PathBuf};
use std::time::Duration;

use minik_bench::etcd::{self, EtcdServer, dir_size};
use minik_bench::kv::{Etcd, Kv, Minik};
use minik_bench::report::{Table, mib, ms, rate, ratio};
use minik_bench::workloads as w;
use minik_store::StoreOptions;

struct Plan {
    run: Duration,
    gets: usize,
    list_keys: usize,
    watchers: usize,
    watch_run: Duration,
    size_keys: usize,
    size_rounds: usize,
}

fn plan() -> Plan {
    if std::env::var_os("BENCH_QUICK").is_some() {
        return Plan {
            run: Duration::from_millis(500),
            gets: 500,
            list_keys: 1000,
            watchers: 50,
            watch_run: Duration::from_secs(1),
            size_keys: 100,
            size_rounds: 10,
        };
    }
    Plan {
        run: Duration::from_secs(3),
        gets: 5000,
        list_keys: 10_000,
        watchers: 1000,
        watch_run: Duration::from_secs(4),
        size_keys: 1000,
        size_rounds: 100,
    }
}

/// Benchmark data goes on the same disk as the build (not a tmpfs), under target/.
fn work_dir() -> tempfile::TempDir {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).expect("target dir");
    tempfile::Builder::new()
        .prefix("bench-store-")
        .tempdir_in(target)
        .expect("bench dir")
}

async fn start_pair(dir: &Path) -> (Minik, Etcd, EtcdServer) {
    let options = StoreOptions {
        compaction_interval: Duration::ZERO,
        ..StoreOptions::default()
    };
    let store = minik_store::open("", &dir.join("minik"), options)
        .await
        .expect("open minik store");
    let server = EtcdServer::start(dir).await;
    let client = etcd_client::Client::connect([&server.endpoint], None)
        .await
        .expect("connect etcd");
    (Minik(store), Etcd(client), server)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let p = plan();
    let dir = work_dir();
    let etcd_version = etcd::version();
    eprintln!("bench-store: data under {}", dir.path().display());
    let mut t = Table::new(
        format!(
            "minik store (SQLite, in process) vs {etcd_version} (gRPC on 127.0.0.1); \
             1 KiB values; same machine, same run"
        ),
        &["minik", "etcd", "minik/etcd"],
    );
    let (mk, ec, server) = start_pair(&dir.path().join("a")).await;

    for writers in [1, 16, 64] {
        let m = w::creates_per_sec(&mk, &format!("/c{writers}/"), writers, p.run).await;
        let e = w::creates_per_sec(&ec, &format!("/c{writers}/"), writers, p.run).await;
        t.row(
            format!("durable creates/s, {writers} writers"),
            vec![rate(m), rate(e), ratio(m, e)],
        );
    }
    let m = w::cas_per_sec(&mk, "/cas/", 16, p.run).await;
    let e = w::cas_per_sec(&ec, "/cas/", 16, p.run).await;
    t.row(
        "CAS updates/s, 16 writers",
        vec![rate(m), rate(e), ratio(m, e)],
    );

    let mk_keys = w::fill(&mk, "/list/", p.list_keys).await;
    let ec_keys = w::fill(&ec, "/list/", p.list_keys).await;
    let (m50, m99) = w::get_latency(&mk, &mk_keys, p.gets).await;
    let (e50, e99) = w::get_latency(&ec, &ec_keys, p.gets).await;
    t.row(
        "get p50 / p99 (µs)",
        vec![
            format!("{m50:.0} / {m99:.0}"),
            format!("{e50:.0} / {e99:.0}"),
            String::new(),
        ],
    );
    let m = w::list_ms(&mk, "/list/", p.list_keys).await;
    let e = w::list_ms(&ec, "/list/", p.list_keys).await;
    t.row(
        format!("list {} keys under a prefix (ms, median of 5)", p.list_keys),
        vec![ms(m), ms(e), String::new()],
    );

    let m = w::watch_latency(&mk, "/watch/", p.watchers, 500, p.watch_run).await;
    let e = w::watch_latency(&ec, "/watch/", p.watchers, 500, p.watch_run).await;
    t.row(
        format!(
            "watch delivery p50 / p99 (ms), {} watchers, 500 writes/s",
            p.watchers
        ),
        vec![
            format!("{} / {}", ms(m.p50_ms), ms(m.p99_ms)),
            format!("{} / {}", ms(e.p50_ms), ms(e.p99_ms)),
            String::new(),
        ],
    );
    t.row(
        "watch events delivered / expected",
        vec![
            format!("{} / {}", m.delivered, m.expected),
            format!("{} / {}", e.delivered, e.expected),
            String::new(),
        ],
    );
    drop(server);
    mk.0.close().await;

    // Disk use: fresh stores, 100,000 updates of 1,000 keys.
    let (mk, ec, server) = start_pair(&dir.path().join("b")).await;
    w::update_rounds(&mk, "/size/", p.size_keys, p.size_rounds).await;
    w::update_rounds(&ec, "/size/", p.size_keys, p.size_rounds).await;
    let mk_dir = dir.path().join("b/minik");
    let (m_before, e_before) = (dir_size(&mk_dir), dir_size(&server.data_dir));
    mk.compact().await;
    ec.compact().await;
    let (m_after, e_after) = (dir_size(&mk_dir), dir_size(&server.data_dir));
    ec.0.clone().defragment().await.expect("etcd defragment");
    let e_defrag = dir_size(&server.data_dir);
    let updates = p.size_keys * p.size_rounds;
    t.row(
        format!(
            "MiB on disk after {updates} updates of {} keys",
            p.size_keys
        ),
        vec![mib(m_before), mib(e_before), String::new()],
    );
    t.row(
        "MiB on disk after compaction",
        vec![mib(m_after), mib(e_after), String::new()],
    );
    t.row(
        "MiB on disk after compaction + etcd defrag",
        vec![mib(m_after), mib(e_defrag), String::new()],
    );
    drop(server);
    mk.0.close().await;
    println!("{}", t.render());
}
