//! Running a plugin process with a deadline: its config written on stdin, stdout and
//! stderr read to the end, killed if it outlives the deadline. Starting an executable
//! that is still open for writing (ETXTBSY, e.g. just installed) is retried, as libcni does.

use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// What a finished process left.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Starts `cmd` (stdin, stdout and stderr piped), retrying while the executable is busy.
fn spawn(cmd: &mut Command) -> io::Result<Child> {
    const ETXTBSY: i32 = 26;
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < 5 => {
                attempt += 1;
                thread::sleep(Duration::from_millis(50 * attempt));
            }
            other => return other,
        }
    }
}

/// Runs `cmd` with `input` on stdin. Ok(None) if it was killed at `timeout`.
pub fn run(cmd: &mut Command, input: &[u8], timeout: Duration) -> io::Result<Option<Finished>> {
    let mut child = spawn(cmd)?;
    let readers = [
        child.stdout.take().map(drain),
        child.stderr.take().map(drain),
    ];
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin may exit without reading its input; its exit status tells what happened.
        match stdin.write_all(input) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                tracing::warn!(error = %e, "writing a CNI plugin's config")
            }
            _ => {}
        }
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            // The readers are left to finish on their own: a child of the plugin may
            // still hold its pipes.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    Ok(Some(Finished {
        status,
        stdout,
        stderr,
    }))
}

/// Reads a pipe to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}
