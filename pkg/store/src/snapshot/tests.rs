//! Snapshots: save while the store is open, restore into a new directory, reopen.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::{ListOptions, StoreOptions, default_sqlite_path, open};

/// Keys and values under `/` of the store in `data_dir`, and its revision.
async fn contents(data_dir: &Path) -> (Vec<(String, Vec<u8>, i64)>, i64) {
    let store = open("", data_dir, StoreOptions::default()).await.unwrap();
    let list = store.list("/", ListOptions::default()).await.unwrap();
    let rev = store.current_revision().await.unwrap();
    store.close().await;
    let kvs = list
        .kvs
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_vec(), kv.mod_revision))
        .collect();
    (kvs, rev)
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn save_online_then_restore_gives_the_same_keys_revision_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    let store = open("", &old, StoreOptions::default()).await.unwrap();
    store.create("/a", b"1".to_vec()).await.unwrap();
    let b = store.create("/b", b"2".to_vec()).await.unwrap();
    store
        .update("/b", b"2b".to_vec(), b.mod_revision)
        .await
        .unwrap();
    store.create("/c", b"3".to_vec()).await.unwrap();
    store.delete("/c", None).await.unwrap();
    let saved_rev = store.current_revision().await.unwrap();
    let saved = store.list("/", ListOptions::default()).await.unwrap();

    write(&old.join("tls/ca.key"), b"secret key", 0o600);
    write(&old.join("tls/sub/ca.crt"), b"cert", 0o644);
    write(&old.join("server/token"), b"tok", 0o600);
    write(&old.join("server/manifests/x.yaml"), b"no", 0o644);
    let files = collect_files(&old, &["tls", "server/token", "server/missing"]).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["server/token", "tls/ca.key", "tls/sub/ca.crt"]);

    // Online: the store is open (and its directory locked) while the snapshot is taken.
    let snap = tmp.path().join("snap");
    let info = save(&default_sqlite_path(&old), &snap, &files)
        .await
        .unwrap();
    assert_eq!(
        info,
        SnapshotInfo {
            revision: saved_rev,
            keys: 2,
            files: 3
        }
    );
    assert_eq!(
        fs::metadata(&snap).unwrap().permissions().mode() & 0o777,
        0o600
    );
    store.create("/after", b"x".to_vec()).await.unwrap();
    store.close().await;
    assert_eq!(inspect(&snap).await.unwrap(), info);

    let new = tmp.path().join("new");
    let (restored_info, restored_files) = restore(&snap, &default_sqlite_path(&new)).await.unwrap();
    assert_eq!(restored_info, info);
    assert_eq!(restored_files, files);
    write_files(&new, &restored_files).unwrap();
    for f in &files {
        let path = new.join(&f.path);
        assert_eq!(fs::read(&path).unwrap(), f.content);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            f.mode
        );
    }
    assert_eq!(
        fs::metadata(new.join("tls/sub"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(!new.join("server/manifests").exists());

    let (kvs, rev) = contents(&new).await;
    let want: Vec<(String, Vec<u8>, i64)> = saved
        .kvs
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_vec(), kv.mod_revision))
        .collect();
    assert_eq!(kvs, want);
    assert_eq!(rev, saved_rev);
    // The restored database is a plain datastore again: no files table.
    let mut conn = connect(&default_sqlite_path(&new), true).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!tables.iter().any(|t| t == FILES_TABLE), "{tables:?}");
}

#[tokio::test]
async fn restore_refuses_an_existing_datastore_until_it_is_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let store = open("", &dir, StoreOptions::default()).await.unwrap();
    store.create("/k", b"v".to_vec()).await.unwrap();
    store.close().await;
    let db = default_sqlite_path(&dir);
    let snap = tmp.path().join("snap");
    save(&db, &snap, &[]).await.unwrap();
    let err = save(&db, &snap, &[]).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    let before = fs::read(&db).unwrap();
    let err = restore(&snap, &db).await.unwrap_err();
    assert!(
        err.to_string().contains("move the old datastore aside"),
        "{err}"
    );
    assert_eq!(fs::read(&db).unwrap(), before);

    let moved = move_aside(&db, ".before-restore-1").unwrap();
    assert_eq!(moved, dir.join("db/state.db.before-restore-1"));
    assert!(moved.exists() && !db.exists());
    restore(&snap, &db).await.unwrap();
    let (kvs, _) = contents(&dir).await;
    assert_eq!(kvs.len(), 1);
    assert_eq!(kvs[0].0, "/k");
}

#[tokio::test]
async fn files_that_are_not_snapshots_or_datastores_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("notes.txt");
    fs::write(&text, "hello, this is not a database at all").unwrap();
    let err = inspect(&text).await.unwrap_err();
    assert!(err.to_string().contains("is not a minik snapshot"), "{err}");
    let err = restore(&text, &tmp.path().join("x/state.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a minik snapshot"), "{err}");
    assert!(!tmp.path().join("x/state.db").exists());

    // A datastore is a SQLite database but not a snapshot.
    let dir = tmp.path().join("d");
    open("", &dir, StoreOptions::default())
        .await
        .unwrap()
        .close()
        .await;
    let err = inspect(&default_sqlite_path(&dir)).await.unwrap_err();
    assert!(err.to_string().contains("is not a minik snapshot"), "{err}");

    // Another application's SQLite database is not a datastore.
    let other = tmp.path().join("other.db");
    let mut conn = base_options(&other)
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = save(&other, &tmp.path().join("s"), &[]).await.unwrap_err();
    assert!(
        err.to_string().contains("is not a minik datastore"),
        "{err}"
    );
    assert!(!tmp.path().join("s").exists());
    assert!(save(&text, &tmp.path().join("s"), &[]).await.is_err());
    assert!(
        save(&tmp.path().join("missing"), &tmp.path().join("s"), &[])
            .await
            .is_err()
    );
}

#[test]
fn paths_must_stay_inside() {
    for bad in ["", "../x", "/etc/passwd", "a/../../b", "./a"] {
        assert!(check_relative(bad).is_err(), "{bad}");
        let file = SnapshotFile {
            path: bad.into(),
            mode: 0o600,
            content: vec![],
        };
        assert!(write_files(Path::new("/nonexistent"), &[file]).is_err());
    }
    assert!(check_relative("tls/ca.crt").is_ok());
    assert!(collect_files(Path::new("/tmp"), &["../etc"]).is_err());
}
