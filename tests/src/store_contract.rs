//! The store contract: every backend (memory, SQLite, later PostgreSQL and etcd) must pass
//! these. `contract_tests!` instantiates them for one backend factory.

use std::sync::Arc;
use std::time::Duration;

use minik_store::{Backend, Error, EventKind, ListOptions, StoreOptions};

/// A backend under test, plus whatever keeps it alive (a temp dir).
pub struct Subject {
    pub store: Arc<dyn Backend>,
    pub _keep: Option<Box<dyn std::any::Any + Send>>,
}

/// Options the contract runs with: small buffers so edge cases are reachable quickly.
pub fn contract_options() -> StoreOptions {
    StoreOptions {
        compaction_interval: Duration::ZERO,
        watch_recent_events: 8,
        watch_buffer: 64,
        ..StoreOptions::default()
    }
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn next_event(w: &mut minik_store::WatchStream) -> minik_store::Event {
    tokio::time::timeout(Duration::from_secs(10), w.recv())
        .await
        .expect("an event within 10s")
        .expect("stream open")
        .expect("no error")
}

pub async fn crud_and_revisions(s: Subject) {
    let st = s.store;
    let r0 = st.current_revision().await.unwrap();
    let a = st.create("/r/a", v("1")).await.unwrap();
    assert_eq!(a.create_revision, r0 + 1);
    assert_eq!(a.mod_revision, r0 + 1);
    assert_eq!(
        st.create("/r/a", v("again")).await,
        Err(Error::KeyExists { key: "/r/a".into() })
    );
    // A failed write takes no revision.
    assert_eq!(st.current_revision().await.unwrap(), r0 + 1);
    let a2 = st.update("/r/a", v("2"), a.mod_revision).await.unwrap();
    assert_eq!(a2.create_revision, r0 + 1);
    assert_eq!(a2.mod_revision, r0 + 2);
    let (rev, got) = st.get("/r/a", None).await.unwrap();
    assert_eq!(rev, r0 + 2);
    assert_eq!(got.unwrap().value.as_ref(), b"2");
    assert_eq!(
        st.update("/r/missing", v("x"), 1).await,
        Err(Error::NotFound {
            key: "/r/missing".into()
        })
    );
    let d = st.delete("/r/a", None).await.unwrap();
    assert_eq!(d.revision, r0 + 3);
    assert_eq!(d.prev.value.as_ref(), b"2");
    assert_eq!(d.prev.mod_revision, r0 + 2);
    assert_eq!(st.get("/r/a", None).await.unwrap().1, None);
    assert!(matches!(
        st.delete("/r/a", None).await,
        Err(Error::NotFound { .. })
    ));
    // Re-create after delete starts a new life.
    let again = st.create("/r/a", v("3")).await.unwrap();
    assert_eq!(again.create_revision, r0 + 4);
    assert!(matches!(
        st.create("", v("x")).await,
        Err(Error::InvalidArgument(_))
    ));
}

pub async fn cas_conflicts_change_nothing(s: Subject) {
    let st = s.store;
    let a = st.create("/cas/a", v("1")).await.unwrap();
    let b = st.update("/cas/a", v("2"), a.mod_revision).await.unwrap();
    let rev = st.current_revision().await.unwrap();
    assert_eq!(
        st.update("/cas/a", v("stale"), a.mod_revision).await,
        Err(Error::Conflict {
            key: "/cas/a".into(),
            expected: a.mod_revision,
            current: b.mod_revision
        })
    );
    assert!(matches!(
        st.delete("/cas/a", Some(a.mod_revision)).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(st.current_revision().await.unwrap(), rev);
    let (_, now) = st.get("/cas/a", None).await.unwrap();
    assert_eq!(now.unwrap().value.as_ref(), b"2");
    st.delete("/cas/a", Some(b.mod_revision)).await.unwrap();
}

pub async fn reads_at_past_revisions(s: Subject) {
    let st = s.store;
    let before = st.current_revision().await.unwrap();
    let a1 = st.create("/past/a", v("1")).await.unwrap();
    let a2 = st.update("/past/a", v("2"), a1.mod_revision).await.unwrap();
    let del = st.delete("/past/a", None).await.unwrap();
    let get = async |rev| st.get("/past/a", Some(rev)).await.unwrap().1;
    assert_eq!(get(before).await, None);
    assert_eq!(get(a1.mod_revision).await.unwrap().value.as_ref(), b"1");
    assert_eq!(get(a2.mod_revision).await.unwrap().value.as_ref(), b"2");
    assert_eq!(get(del.revision).await, None);
    let list = st
        .list(
            "/past/",
            ListOptions {
                revision: Some(a2.mod_revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(list.revision, a2.mod_revision);
    assert_eq!(list.kvs.len(), 1);
    assert_eq!(list.kvs[0].value.as_ref(), b"2");
    let future = del.revision + 100;
    assert!(matches!(
        st.get("/past/a", Some(future)).await,
        Err(Error::FutureRevision { .. })
    ));
}

pub async fn list_prefix_and_pages(s: Subject) {
    let st = s.store;
    for i in 0..10 {
        st.create(&format!("/l/a/{i:02}"), v(&i.to_string()))
            .await
            .unwrap();
    }
    st.create("/l/ab", v("not under /l/a/")).await.unwrap();
    st.create("/l/a", v("not under /l/a/ either"))
        .await
        .unwrap();
    st.delete("/l/a/05", None).await.unwrap();
    let all = st.list("/l/a/", ListOptions::default()).await.unwrap();
    let keys: Vec<_> = all.kvs.iter().map(|k| k.key.clone()).collect();
    let want: Vec<_> = (0..10)
        .filter(|i| *i != 5)
        .map(|i| format!("/l/a/{i:02}"))
        .collect();
    assert_eq!(keys, want);
    assert!(!all.more);
    assert_eq!(st.count("/l/a/").await.unwrap().1, 9);
    assert_eq!(st.count("/l/").await.unwrap().1, 11);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = st
            .list(
                "/l/a/",
                ListOptions {
                    limit: 4,
                    continue_after: after.clone(),
                    revision: Some(all.revision),
                },
            )
            .await
            .unwrap();
        assert!(page.kvs.len() <= 4);
        paged.extend(page.kvs.iter().map(|k| k.key.clone()));
        if !page.more {
            break;
        }
        after = page.kvs.last().map(|k| k.key.clone());
    }
    assert_eq!(paged, want);
}

pub async fn pagination_is_one_snapshot_under_writes(s: Subject) {
    let st = s.store;
    for i in 0..40 {
        st.create(&format!("/snap/{i:03}"), v("orig"))
            .await
            .unwrap();
    }
    let first = st
        .list(
            "/snap/",
            ListOptions {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let snapshot_rev = first.revision;
    // Writers change everything while the client pages.
    let writer = {
        let st = st.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let key = format!("/snap/{i:03}");
                if i % 3 == 0 {
                    st.delete(&key, None).await.unwrap();
                } else {
                    let (_, kv) = st.get(&key, None).await.unwrap();
                    st.update(&key, v("changed"), kv.unwrap().mod_revision)
                        .await
                        .unwrap();
                }
                st.create(&format!("/snap/{i:03}x"), v("new"))
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen: Vec<_> = first.kvs.clone();
    let mut after = first.kvs.last().map(|k| k.key.clone());
    let mut more = first.more;
    while more {
        let page = st
            .list(
                "/snap/",
                ListOptions {
                    limit: 10,
                    continue_after: after.clone(),
                    revision: Some(snapshot_rev),
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, snapshot_rev);
        after = page.kvs.last().map(|k| k.key.clone());
        more = page.more;
        seen.extend(page.kvs);
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(seen.len(), 40);
    assert!(seen.iter().all(|k| k.value.as_ref() == b"orig"));
    assert!(seen.iter().all(|k| k.mod_revision <= snapshot_rev));
}

pub async fn watch_in_order_with_prev(s: Subject) {
    let st = s.store;
    st.create("/other/x", v("0")).await.unwrap();
    let mut w = st.watch("/w/", 0).await.unwrap();
    let a = st.create("/w/a", v("1")).await.unwrap();
    st.create("/other/y", v("not watched")).await.unwrap();
    let a2 = st.update("/w/a", v("2"), a.mod_revision).await.unwrap();
    let d = st.delete("/w/a", None).await.unwrap();
    let e1 = next_event(&mut w).await;
    assert_eq!(
        (e1.kind, e1.kv.mod_revision),
        (EventKind::Put, a.mod_revision)
    );
    assert_eq!(e1.prev, None);
    let e2 = next_event(&mut w).await;
    assert_eq!(e2.kv, a2);
    assert_eq!(e2.prev.as_ref().unwrap().value.as_ref(), b"1");
    let e3 = next_event(&mut w).await;
    assert_eq!(e3.kind, EventKind::Delete);
    assert_eq!(e3.kv.mod_revision, d.revision);
    assert_eq!(e3.prev.unwrap(), a2);
}

/// Resuming from any revision gives exactly the events from there: from the recent ring
/// and, further back, from the database.
pub async fn watch_resumes_from_any_revision(s: Subject) {
    let st = s.store;
    let start = st.current_revision().await.unwrap() + 1;
    let mut revs = Vec::new();
    for i in 0..30 {
        let key = format!("/res/{}", i % 4);
        let kv = match st.get(&key, None).await.unwrap().1 {
            Some(kv) => st.update(&key, v(&i.to_string()), kv.mod_revision).await,
            None => st.create(&key, v(&i.to_string())).await,
        };
        revs.push(kv.unwrap().mod_revision);
        st.create(&format!("/unrelated/{i}"), v("x")).await.unwrap();
    }
    for from in [start, revs[5], revs[20], revs[29]] {
        let mut w = st.watch("/res/", from).await.unwrap();
        let want: Vec<i64> = revs.iter().copied().filter(|r| *r >= from).collect();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let e = next_event(&mut w).await;
            if let Some(p) = &e.prev {
                assert!(p.mod_revision < e.kv.mod_revision);
                assert_eq!(p.key, e.kv.key);
            }
            got.push(e.kv.mod_revision);
        }
        assert_eq!(got, want, "watch from {from}");
        // Then live, with no duplicate.
        let kv = st
            .create(&format!("/res/live{from}"), v("l"))
            .await
            .unwrap();
        assert_eq!(next_event(&mut w).await.kv, kv);
        revs.push(kv.mod_revision);
    }
}

/// A watcher far behind catches up through several history pages, in order, without gaps,
/// while writes go on.
pub async fn watch_catches_up_across_history_pages(s: Subject) {
    let st = s.store;
    let start = st.current_revision().await.unwrap() + 1;
    let write_many = |base: usize, n: usize| {
        let st = st.clone();
        async move {
            let mut tasks = Vec::new();
            for w in 0..16 {
                let st = st.clone();
                tasks.push(tokio::spawn(async move {
                    for i in (w..n).step_by(16) {
                        st.create(&format!("/hist/{}", base + i), v("x")).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    write_many(0, 2500).await;
    let mut w = st.watch("/hist/", start).await.unwrap();
    let more = tokio::spawn(write_many(2500, 300));
    let mut last = start - 1;
    for _ in 0..2800 {
        let e = next_event(&mut w).await;
        assert!(e.kv.mod_revision > last, "in order");
        last = e.kv.mod_revision;
    }
    more.await.unwrap();
    assert_eq!(last, st.current_revision().await.unwrap());
}

pub async fn compaction_keeps_state_and_refuses_old(s: Subject) {
    let st = s.store;
    let a = st.create("/c/a", v("1")).await.unwrap();
    let a2 = st.update("/c/a", v("2"), a.mod_revision).await.unwrap();
    st.create("/c/gone", v("x")).await.unwrap();
    let gone = st.delete("/c/gone", None).await.unwrap();
    let b = st.create("/c/b", v("b")).await.unwrap();
    let target = st.current_revision().await.unwrap();
    let a3 = st.update("/c/a", v("3"), a2.mod_revision).await.unwrap();
    st.compact(target).await.unwrap();
    assert_eq!(st.compacted_revision().await.unwrap(), target);
    // The state at the compacted revision and after stays readable.
    let at = st
        .list(
            "/c/",
            ListOptions {
                revision: Some(target),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let vals: Vec<_> = at
        .kvs
        .iter()
        .map(|k| (k.key.as_str(), k.value.as_ref()))
        .collect();
    assert_eq!(vals, vec![("/c/a", &b"2"[..]), ("/c/b", &b"b"[..])]);
    assert_eq!(st.get("/c/gone", None).await.unwrap().1, None);
    assert_eq!(st.get("/c/b", None).await.unwrap().1.unwrap(), b);
    // Older reads and watches are refused with Compacted.
    assert!(matches!(
        st.get("/c/a", Some(a.mod_revision)).await,
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        st.watch("/c/", gone.revision).await,
        Err(Error::Compacted { .. })
    ));
    // A watch from just after the compacted revision replays, with prev values.
    let mut w = st.watch("/c/", target + 1).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(e.kv, a3);
    assert_eq!(e.prev.unwrap().value.as_ref(), b"2");
    // Compacting again later drops a tombstone and the row it replaced.
    let del = st.delete("/c/a", None).await.unwrap();
    st.compact(del.revision).await.unwrap();
    assert_eq!(st.get("/c/a", None).await.unwrap().1, None);
    assert_eq!(st.count("/c/").await.unwrap().1, 1);
    // Compacting to the past is a no-op; to the future an error.
    st.compact(1).await.unwrap();
    assert!(matches!(
        st.compact(del.revision + 10).await,
        Err(Error::FutureRevision { .. })
    ));
}

pub async fn slow_watcher_is_ended(s: Subject) {
    let st = s.store;
    let mut slow = st.watch("/slow/", 0).await.unwrap();
    // More committed batches than the watcher's buffer (64), one write each.
    for i in 0..200 {
        st.create(&format!("/slow/{i}"), v("x")).await.unwrap();
    }
    let mut got = 0;
    let err = loop {
        match slow.recv().await {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    };
    assert_eq!(err, Error::WatcherTooSlow);
    assert!(got < 200);
    assert!(slow.recv().await.is_none());
    // The store is unaffected: a fresh watch works.
    let mut w = st.watch("/slow/", 0).await.unwrap();
    let kv = st.create("/slow/after", v("y")).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, kv);
}

/// Many writers doing read-modify-write with CAS on shared counters lose no increment.
pub async fn concurrent_cas_loses_nothing(s: Subject) {
    let st = s.store;
    const WRITERS: usize = 16;
    const EACH: usize = 25;
    for c in 0..4 {
        st.create(&format!("/ctr/{c}"), v("0")).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let st = st.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/ctr/{}", w % 4);
            let mut conflicts = 0;
            for _ in 0..EACH {
                loop {
                    let (_, kv) = st.get(&key, None).await.unwrap();
                    let kv = kv.unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    match st
                        .update(&key, v(&(n + 1).to_string()), kv.mod_revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let list = st.list("/ctr/", ListOptions::default()).await.unwrap();
    let total: u64 = list
        .kvs
        .iter()
        .map(|k| {
            std::str::from_utf8(&k.value)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, (WRITERS * EACH) as u64);
}

pub async fn close_ends_watches_and_writes(s: Subject) {
    let st = s.store;
    let mut w = st.watch("/", 0).await.unwrap();
    st.create("/close/a", v("1")).await.unwrap();
    st.close().await;
    assert!(matches!(w.recv().await, Some(Ok(_))));
    assert!(w.recv().await.is_none());
    assert_eq!(st.create("/close/b", v("1")).await, Err(Error::Closed));
    assert!(matches!(st.watch("/", 0).await, Err(Error::Closed)));
}

/// Instantiate every contract test for one backend: `contract_tests!(memory, make_memory)`
/// where `make_memory()` is an async fn returning a `Subject`.
#[macro_export]
macro_rules! contract_tests {
    ($backend:ident, $factory:path) => {
        mod $backend {
            use $crate::store_contract as c;
            $crate::contract_tests!(@each $factory;
                crud_and_revisions, cas_conflicts_change_nothing, reads_at_past_revisions,
                list_prefix_and_pages, pagination_is_one_snapshot_under_writes,
                watch_in_order_with_prev, watch_resumes_from_any_revision,
                watch_catches_up_across_history_pages,
                compaction_keeps_state_and_refuses_old, slow_watcher_is_ended,
                concurrent_cas_loses_nothing, close_ends_watches_and_writes);
        }
    };
    (@each $factory:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                c::$name($factory().await).await;
            }
        )*
    };
}
