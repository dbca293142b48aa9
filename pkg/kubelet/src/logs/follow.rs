//! Serving one log file as a stream of rendered chunks: what is there (from the tail
//! asked for), then, with `follow`, what is appended while the container runs. A rotation
//! (the path naming a new file) is followed: the old file is read to its end, then the new
//! one from its start. The stream ends when the client is gone, limitBytes is reached, or
//! the container stopped and everything it wrote was sent.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::{Options, Renderer, tail_start};

/// How often a followed file is looked at for new lines.
const POLL: Duration = Duration::from_millis(100);

/// A chunk of the stream, or the error that ended it.
pub type Chunk = Result<Bytes, std::io::Error>;

/// Send the log at `path` per `opts` into `tx`; `running` says whether the container may
/// still write (follow ends once it does not).
pub async fn stream(
    path: PathBuf,
    opts: Options,
    running: impl Fn() -> bool + Send + 'static,
    tx: mpsc::Sender<Chunk>,
) {
    if let Err(e) = run(&path, None, &opts, running, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

/// As `stream`, from byte `offset` of the file on (what was there when an attachment
/// began), whatever `tail_lines` says.
pub async fn stream_from(
    path: PathBuf,
    offset: u64,
    opts: Options,
    running: impl Fn() -> bool + Send + 'static,
    tx: mpsc::Sender<Chunk>,
) {
    if let Err(e) = run(&path, Some(offset), &opts, running, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

async fn run(
    path: &PathBuf,
    offset: Option<u64>,
    opts: &Options,
    running: impl Fn() -> bool,
    tx: &mpsc::Sender<Chunk>,
) -> std::io::Result<()> {
    let mut renderer = Renderer::new(opts);
    let mut file = tokio::fs::File::open(path).await?;
    let mut inode = file.metadata().await?.ino();
    let mut data = Vec::new();
    file.read_to_end(&mut data).await?;
    let start = match offset {
        Some(o) => usize::try_from(o).unwrap_or(usize::MAX).min(data.len()),
        None => opts.tail_lines.map_or(0, |n| tail_start(&data, n)),
    };
    let mut pending = data.split_off(start);
    loop {
        let mut out = Vec::new();
        let used = renderer.render(&pending, &mut out);
        pending.drain(..used);
        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
            return Ok(());
        }
        if renderer.done() || !opts.follow {
            return Ok(());
        }
        // Wait for more: appended lines, a new file after a rotation, or the end.
        loop {
            let ended = !running();
            let before = pending.len();
            file.read_to_end(&mut pending).await?;
            if pending.len() > before {
                break;
            }
            match tokio::fs::metadata(path).await {
                Ok(m) if m.ino() != inode => {
                    // Rotated: what the old file got since the last read first (written
                    // before the new file was made), then the new one.
                    file.read_to_end(&mut pending).await?;
                    file = tokio::fs::File::open(path).await?;
                    inode = m.ino();
                    file.seek(SeekFrom::Start(0)).await?;
                    if pending.len() > before {
                        break;
                    }
                    continue;
                }
                _ => {}
            }
            if ended {
                return Ok(());
            }
            tokio::select! {
                () = tx.closed() => return Ok(()),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn line(n: usize) -> String {
        format!("2024-01-02T03:04:05.{n:09}Z stdout F line {n}\n")
    }

    async fn next(rx: &mut mpsc::Receiver<Chunk>) -> String {
        let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a chunk in time")
            .expect("the stream open")
            .expect("no error");
        String::from_utf8(chunk.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn follow_streams_appended_lines_across_a_rotation_until_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, format!("{}{}{}", line(1), line(2), line(3))).unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(8);
        let opts = Options {
            follow: true,
            tail_lines: Some(1),
            ..Options::default()
        };
        let alive = running.clone();
        let task = tokio::spawn(stream(
            path.clone(),
            opts,
            move || alive.load(Ordering::SeqCst),
            tx,
        ));
        assert_eq!(next(&mut rx).await, "line 3\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(line(4).as_bytes()).unwrap();
        assert_eq!(next(&mut rx).await, "line 4\n");
        // Rotation: the file is renamed, a line still lands in it, then a new file starts.
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        f.write_all(line(5).as_bytes()).unwrap();
        std::fs::write(&path, line(6)).unwrap();
        let mut got = String::new();
        while !got.contains("line 6") {
            got.push_str(&next(&mut rx).await);
        }
        assert_eq!(got, "line 5\nline 6\n");
        running.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the stream ends once the container stopped")
            .unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn without_follow_the_stream_ends_at_the_files_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, format!("{}{}", line(1), line(2))).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        stream(path, Options::default(), || true, tx).await;
        assert_eq!(next(&mut rx).await, "line 1\nline 2\n");
        assert!(rx.recv().await.is_none());
    }
}
