//! What only the SQLite backend has: files, permissions, the lock, reopening, disk space.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use minik_store::{Error, ListOptions, StoreOptions};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn quiet() -> StoreOptions {
    StoreOptions {
        compaction_interval: Duration::ZERO,
        ..StoreOptions::default()
    }
}

#[tokio::test]
async fn private_files_and_exclusive_lock() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = minik_store::open("", &data, quiet()).await.unwrap();
    store.create("/k", b"v".to_vec()).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("db")), 0o700);
    assert_eq!(mode(&data.join("db/state.db")), 0o600);
    assert_eq!(mode(&data.join("db/state.db-wal")), 0o600);
    assert_eq!(mode(&data.join("db/lock")), 0o600);
    let second = minik_store::open("sqlite://", &data, quiet()).await;
    match second {
        Err(e @ Error::Locked { .. }) => {
            assert!(
                e.to_string().contains("in use by another minik process"),
                "{e}"
            )
        }
        other => panic!("second open: {:?}", other.err()),
    }
    store.close().await;
    // Closed: the next opener gets it.
    let again = minik_store::open("", &data, quiet()).await.unwrap();
    assert_eq!(
        again
            .get("/k", None)
            .await
            .unwrap()
            .1
            .unwrap()
            .value
            .as_ref(),
        b"v"
    );
    again.close().await;
}

#[tokio::test]
async fn state_revisions_and_compaction_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = minik_store::open("", dir.path(), quiet()).await.unwrap();
    let a = store.create("/p/a", b"1".to_vec()).await.unwrap();
    let a2 = store
        .update("/p/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    store.create("/p/b", b"b".to_vec()).await.unwrap();
    let del = store.delete("/p/b", None).await.unwrap();
    store.compact(a2.mod_revision).await.unwrap();
    store.close().await;

    let store = minik_store::open("", dir.path(), quiet()).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), del.revision);
    assert_eq!(store.compacted_revision().await.unwrap(), a2.mod_revision);
    assert!(matches!(
        store.get("/p/a", Some(a.mod_revision)).await,
        Err(Error::Compacted { .. })
    ));
    let list = store.list("/p/", ListOptions::default()).await.unwrap();
    assert_eq!(list.kvs, vec![a2.clone()]);
    // A delete as the very last write is compacted away; revisions still never go back.
    store.compact(del.revision).await.unwrap();
    store.close().await;
    let store = minik_store::open("", dir.path(), quiet()).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), del.revision);
    let next = store.create("/p/c", b"c".to_vec()).await.unwrap();
    assert_eq!(next.mod_revision, del.revision + 1);
    store.close().await;
}

/// Watchers resume across a restart from a revision before it, reading history from disk.
#[tokio::test]
async fn watch_resumes_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = minik_store::open("", dir.path(), quiet()).await.unwrap();
    let a = store.create("/rw/a", b"1".to_vec()).await.unwrap();
    let a2 = store
        .update("/rw/a", b"2".to_vec(), a.mod_revision)
        .await
        .unwrap();
    let d = store.delete("/rw/a", None).await.unwrap();
    store.close().await;
    let store = minik_store::open("", dir.path(), quiet()).await.unwrap();
    let mut w = store.watch("/rw/", a.mod_revision).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = w.recv().await.unwrap().unwrap();
        got.push((e.kind, e.kv.mod_revision, e.prev.map(|p| p.mod_revision)));
    }
    use minik_store::EventKind::{Delete, Put};
    assert_eq!(
        got,
        vec![
            (Put, a.mod_revision, None),
            (Put, a2.mod_revision, Some(a.mod_revision)),
            (Delete, d.revision, Some(a2.mod_revision)),
        ]
    );
    store.close().await;
}

/// Under a steady update load with compaction, the file stops growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_is_bounded_under_steady_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = minik_store::open("", dir.path(), quiet()).await.unwrap();
    let keys = 50;
    let value = vec![b'v'; 2048];
    let mut revs = vec![0i64; keys];
    let mut sizes = Vec::new();
    for round in 0..30 {
        let mut tasks = Vec::new();
        for (k, rev) in revs.iter().enumerate() {
            let (st, value, rev) = (store.clone(), value.clone(), *rev);
            tasks.push(tokio::spawn(async move {
                let key = format!("/size/{k}");
                let kv = if rev == 0 {
                    st.create(&key, value).await
                } else {
                    st.update(&key, value, rev).await
                };
                kv.unwrap().mod_revision
            }));
        }
        for (k, t) in tasks.into_iter().enumerate() {
            revs[k] = t.await.unwrap();
        }
        // Compaction keeps only the last round's history.
        let current = store.current_revision().await.unwrap();
        store.compact(current - keys as i64).await.unwrap();
        sizes.push(store.size_on_disk().await.unwrap());
        if round == 0 {
            assert!(sizes[0] > 0);
        }
    }
    let early = sizes[5];
    let late = *sizes.last().unwrap();
    assert!(
        late <= early * 2,
        "file keeps growing under compaction: {sizes:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_keeps_the_retention_window() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        retention: Duration::from_millis(300),
        compaction_interval: Duration::from_millis(50),
        ..StoreOptions::default()
    };
    let store = minik_store::open("", dir.path(), options).await.unwrap();
    let first = store.create("/bg/a", b"1".to_vec()).await.unwrap();
    let mut rev = first.mod_revision;
    // Keep writing until the compactor has moved past the first write.
    let mut compacted = 0;
    for i in 0..400 {
        rev = store
            .update("/bg/a", i.to_string().into_bytes(), rev)
            .await
            .unwrap()
            .mod_revision;
        compacted = store.compacted_revision().await.unwrap();
        if compacted > first.mod_revision {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(compacted > first.mod_revision, "background compaction ran");
    // What it kept: everything from the compacted revision on. The compactor keeps running
    // (older revisions keep ageing out), so read its revision again if it moved meanwhile.
    let mut kept = false;
    for _ in 0..20 {
        let c = store.compacted_revision().await.unwrap();
        let got = store.get("/bg/a", Some(c)).await.is_ok();
        let watched = store.watch("/bg/", c + 1).await.is_ok();
        if got && watched {
            kept = true;
            break;
        }
        assert!(
            store.compacted_revision().await.unwrap() > c,
            "refused a revision the compactor had not reached"
        );
    }
    assert!(kept);
    assert!(matches!(
        store.get("/bg/a", Some(first.mod_revision)).await,
        Err(Error::Compacted { .. })
    ));
    store.close().await;
}

#[tokio::test]
async fn bad_endpoints_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let e = minik_store::open("postgres://u@127.0.0.1/db", dir.path(), quiet())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("not built yet"), "{e}");
    let e = minik_store::open("mysql:x", dir.path(), quiet())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[tokio::test]
async fn watch_reports_progress_past_other_keys() {
    use minik_store::Progress;
    let dir = tempfile::tempdir().unwrap();
    let store = minik_store::open("", dir.path(), quiet()).await.unwrap();
    let mine = store.create("/p/mine", b"1".to_vec()).await.unwrap();
    let mut w = store.watch("/p/", mine.mod_revision).await.unwrap();
    match next(&mut w).await {
        Progress::Event(e) => assert_eq!(e.kv.mod_revision, mine.mod_revision),
        other => panic!("{other:?}"),
    }
    // A write elsewhere: no event, but progress up to its revision.
    let other = store.create("/q/other", b"1".to_vec()).await.unwrap();
    match next(&mut w).await {
        Progress::UpTo(rv) => assert_eq!(rv, other.mod_revision),
        other => panic!("{other:?}"),
    }
    let again = store.create("/p/again", b"1".to_vec()).await.unwrap();
    match next(&mut w).await {
        Progress::Event(e) => assert_eq!(e.kv.mod_revision, again.mod_revision),
        other => panic!("{other:?}"),
    }
    store.close().await;
}

async fn next(w: &mut minik_store::WatchStream) -> minik_store::Progress {
    tokio::time::timeout(Duration::from_secs(5), w.recv_progress())
        .await
        .expect("progress within 5 s")
        .unwrap()
        .unwrap()
}
