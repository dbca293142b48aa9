//! Contract tests of watch and compaction.

use minik_store::{Error, EventKind, ListOptions};

use super::{Subject, next_event, v};

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
                        st.create(&format!("/hist/{}", base + i), v("x"))
                            .await
                            .unwrap();
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
    // Fewer concurrent writes than the watcher's buffer (64 batches): it must not lag out.
    let more = tokio::spawn(write_many(2500, 40));
    let mut last = start - 1;
    for _ in 0..2540 {
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
    let vals: Vec<_> = at.kvs.iter().map(|k| (&*k.key, k.value.as_ref())).collect();
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
