//! Crash safety: a child process writes as fast as it can and is killed with SIGKILL; every
//! write it saw acknowledged must be there after, and the store must open cleanly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use minik_store::{Error, ListOptions, StoreOptions};

const ACKS_BEFORE_KILL: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db").join("state.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(&db)
        .arg("8")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    // While the child runs, a second opener is refused with a clear error.
    let endpoint = format!("sqlite://{}", db.display());
    let second = minik_store::open(&endpoint, dir.path(), StoreOptions::default()).await;
    assert!(
        matches!(second, Err(Error::Locked { .. })),
        "second open: {:?}",
        second.err()
    );

    let mut created = HashMap::new();
    let mut counters = HashMap::new();
    let mut acks = 0;
    while acks < ACKS_BEFORE_KILL {
        let line = lines.next().expect("child alive").unwrap();
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["create", key, rev] => {
                created.insert(key.to_string(), rev.parse::<i64>().unwrap());
            }
            ["update", key, rev, value] => {
                counters.insert(
                    key.to_string(),
                    (rev.parse::<i64>().unwrap(), value.to_string()),
                );
            }
            _ => panic!("unexpected line {line:?}"),
        }
        acks += 1;
    }
    // SIGKILL mid-stream: writes are in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines the child printed before it died are acknowledgements too.
    for line in lines.map_while(Result::ok) {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["create", key, rev] => {
                created.insert(key.to_string(), rev.parse().unwrap());
            }
            ["update", key, rev, value] => {
                counters.insert(key.to_string(), (rev.parse().unwrap(), value.to_string()));
            }
            _ => {}
        }
    }

    let store = minik_store::open(&endpoint, dir.path(), StoreOptions::default())
        .await
        .expect("the store opens cleanly after SIGKILL");
    for (key, rev) in &created {
        let (_, kv) = store.get(key, None).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("acknowledged create of {key} lost"));
        assert_eq!(kv.create_revision, *rev, "{key}");
    }
    for (key, (rev, value)) in &counters {
        let (_, kv) = store.get(key, None).await.unwrap();
        let kv = kv.unwrap();
        // The counter may have moved on (a write committed but not yet acknowledged), never back.
        assert!(
            kv.mod_revision >= *rev,
            "{key}: {} < {rev}",
            kv.mod_revision
        );
        let now: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
        assert!(now >= value.parse::<u64>().unwrap(), "{key} went back");
    }
    // Revisions continue past everything that was there, and the store takes writes.
    let current = store.current_revision().await.unwrap();
    assert!(created.values().all(|r| *r <= current));
    let kv = store.create("/after/crash", b"ok".to_vec()).await.unwrap();
    assert_eq!(kv.mod_revision, current + 1);
    let keys = store
        .list("/crash/keys/", ListOptions::default())
        .await
        .unwrap();
    assert!(keys.kvs.len() >= created.len());
    store.close().await;
}
