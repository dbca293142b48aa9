//! The store contract: every backend (memory, SQLite, later PostgreSQL and etcd) must pass
//! these. `contract_tests!` instantiates them for one backend factory.

use std::sync::Arc;
use std::time::Duration;

use minik_store::{Backend, Error, ListOptions, StoreOptions};

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

mod watch;
pub use watch::*;

pub(crate) fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub(crate) async fn next_event(w: &mut minik_store::WatchStream) -> minik_store::Event {
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
    let keys: Vec<_> = all.kvs.iter().map(|k| k.key.to_string()).collect();
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
        paged.extend(page.kvs.iter().map(|k| k.key.to_string()));
        if !page.more {
            break;
        }
        after = page.kvs.last().map(|k| k.key.to_string());
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
    let mut after = first.kvs.last().map(|k| k.key.to_string());
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
        after = page.kvs.last().map(|k| k.key.to_string());
        more = page.more;
        seen.extend(page.kvs);
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(seen.len(), 40);
    assert!(seen.iter().all(|k| k.value.as_ref() == b"orig"));
    assert!(seen.iter().all(|k| k.mod_revision <= snapshot_rev));
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
