//! Test fixture for the crash test (not shipped): open a SQLite store at the path given
//! and write from several tasks forever, printing one line per acknowledged write:
//! `create KEY REVISION` or `update KEY REVISION VALUE`. The parent kills it with SIGKILL.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use minik_store::{Backend, StoreOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().expect("usage: store-crash-writer DB WRITERS"));
    let writers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(8);
    let endpoint = format!("sqlite://{}", path.display());
    let store = minik_store::open(
        &endpoint,
        std::path::Path::new("/"),
        StoreOptions::default(),
    )
    .await
    .expect("open store");
    println!("ready");
    let mut tasks = Vec::new();
    for w in 0..writers {
        tasks.push(tokio::spawn(write_forever(store.clone(), w)));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
}

fn ack(line: String) {
    let mut out = std::io::stdout().lock();
    // The parent reads each line as an acknowledgement; it must be out before the next write.
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

async fn write_forever(store: Arc<dyn Backend>, w: usize) {
    let counter = format!("/crash/counter/{w}");
    let mut rev = store
        .create(&counter, b"0".to_vec())
        .await
        .expect("create counter")
        .mod_revision;
    ack(format!("update {counter} {rev} 0"));
    for i in 1u64.. {
        let key = format!("/crash/keys/{w}/{i}");
        let kv = store.create(&key, vec![b'x'; 512]).await.expect("create");
        ack(format!("create {key} {}", kv.mod_revision));
        let kv = store
            .update(&counter, i.to_string().into_bytes(), rev)
            .await
            .expect("update");
        rev = kv.mod_revision;
        ack(format!("update {counter} {rev} {i}"));
    }
}
