//! The runtime side of kubectl exec, attach, port-forward and debug: interactive exec with
//! pipes or a terminal (resized), killed when dropped; writing to a container's stdin and
//! resizing its terminal; connecting to a port in a sandbox's network namespace; a
//! container in another's pid namespace; the same through the kubelet's `Embedded` backend.

use std::time::{Duration, Instant};

use minik_kubelet::backend::{Backend, Embedded};
use minik_runtime::{ContainerConfig, Error, ImageStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::env::Env;

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A running container of a new sandbox that sleeps once it printed "ready".
async fn sleeper(env: &Env, name: &str) -> (String, String) {
    let pod = env.sandbox(name, false);
    let config = env.config(&pod, "echo ready; exec sleep 1000");
    let id = config.id.clone();
    env.run(config).await;
    env.wait_for_output(&id, "ready").await;
    (pod, id)
}

async fn read_all(mut from: impl AsyncRead + Unpin) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), from.read_to_end(&mut out))
        .await
        .expect("the stream ends")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Read from `from` until what was read contains `want`.
async fn read_until(from: &mut (impl AsyncRead + Unpin), seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1024];
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, from.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("never got {want:?}; got {seen:?}"))
            .unwrap();
        assert!(n > 0, "ended before {want:?}; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn interactive_exec_has_separate_stdin_stdout_stderr_and_an_exit_code() {
    let env = Env::new();
    let (_, id) = sleeper(&env, "exec-pipes").await;
    let script = "cat; echo to-stderr >&2; exit 3";
    let mut p = env
        .runtime
        .exec_interactive(&id, &argv(&["sh", "-c", script]), &[], None, true)
        .await
        .unwrap();
    assert!(p.terminal().is_none());
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let stdout = read_all(p.stdout.take().unwrap()).await;
    let stderr = read_all(p.stderr.take().unwrap()).await;
    assert_eq!(stdout, "hello\nworld\n");
    assert_eq!(stderr, "to-stderr\n");
    assert_eq!(p.wait().await.unwrap(), 3);
    assert_eq!(p.wait().await.unwrap(), 3);

    // Without stdin the process reads /dev/null.
    let mut p = env
        .runtime
        .exec_interactive(&id, &argv(&["cat"]), &[], None, false)
        .await
        .unwrap();
    assert!(p.stdin.is_none());
    assert_eq!(read_all(p.stdout.take().unwrap()).await, "");
    assert_eq!(p.wait().await.unwrap(), 0);

    let missing = env
        .runtime
        .exec_interactive(&id, &argv(&["no-such-program"]), &[], None, false)
        .await;
    let message = missing.expect_err("an error").to_string();
    assert!(message.contains("executable file not found"), "{message}");
}

#[tokio::test]
async fn an_exec_started_later_does_not_hold_an_earlier_ones_pipes() {
    let env = Env::new();
    let (_, id) = sleeper(&env, "exec-two").await;
    let mut first = env
        .runtime
        .exec_interactive(&id, &argv(&["cat"]), &[], None, true)
        .await
        .unwrap();
    // Forked while the first one's pipes are open in this process.
    let second = env
        .runtime
        .exec_interactive(&id, &argv(&["sleep", "1000"]), &[], None, true)
        .await
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(b"once\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert_eq!(read_all(first.stdout.take().unwrap()).await, "once\n");
    assert_eq!(first.wait().await.unwrap(), 0);
    drop(second);
}

#[tokio::test]
async fn interactive_exec_with_a_terminal_in_the_container_resizes() {
    let env = Env::new();
    let (_, id) = sleeper(&env, "exec-tty").await;
    // The process starts with the size given, and sees a resize.
    let script = "tty; stty size; echo TERM=$TERM; read go; stty size";
    let mut p = env
        .runtime
        .exec_interactive(&id, &argv(&["sh", "-c", script]), &[], Some((91, 27)), true)
        .await
        .unwrap();
    assert!(p.stderr.is_none());
    let mut stdout = p.stdout.take().unwrap();
    let mut stdin = p.stdin.take().unwrap();
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "TERM=xterm").await;
    assert!(seen.starts_with("/dev/pts/"), "{seen:?}");
    assert!(seen.contains("27 91"), "{seen:?}");
    p.resize(100, 30).unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    read_until(&mut stdout, &mut seen, "30 100").await;
    assert_eq!(p.wait().await.unwrap(), 0);
    // The terminal's end reads as the end of its output.
    read_all(stdout).await;
}

#[tokio::test]
async fn dropping_an_interactive_exec_kills_its_process() {
    let env = Env::new();
    let (_, id) = sleeper(&env, "exec-drop").await;
    for tty in [false, true] {
        let p = env
            .runtime
            .exec_interactive(
                &id,
                &argv(&["sleep", "1000"]),
                &[],
                tty.then_some((0, 0)),
                true,
            )
            .await
            .unwrap();
        let proc = format!("/proc/{}", p.pid());
        let cmdline = std::fs::read(format!("{proc}/cmdline")).unwrap();
        assert_eq!(cmdline, b"sleep\x001000\x00");
        drop(p);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::path::Path::new(&proc).exists() {
            assert!(Instant::now() < deadline, "{proc} still there");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Only the container's own process is left in it.
    let r = env
        .runtime
        .exec(
            &id,
            &argv(&["ps", "-o", "args"]),
            &[],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&r.output).to_string();
    assert_eq!(ps.matches("sleep").count(), 1, "{ps}");
}

#[tokio::test]
async fn attach_writes_reach_the_containers_stdin() {
    let env = Env::new();
    let pod = env.sandbox("attach", false);
    let mut config = env.config(&pod, "exec cat");
    config.stdin = true;
    let id = config.id.clone();
    env.run(config).await;
    let mut stdin = env.runtime.attach_stdin(&id).unwrap();
    stdin.write_all(b"through-attach\n").await.unwrap();
    env.wait_for_output(&id, "through-attach").await;
    // A second attach, after the first one closed, still reaches it.
    stdin.shutdown().await.unwrap();
    let mut again = env.runtime.attach_stdin(&id).unwrap();
    again.write_all(b"second\n").await.unwrap();
    env.wait_for_output(&id, "second").await;

    let (_, no_stdin) = sleeper(&env, "attach-none").await;
    let err = env.runtime.attach_stdin(&no_stdin).expect_err("an error");
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    let err = env.runtime.resize_console(&no_stdin, 80, 24).err();
    assert!(matches!(err, Some(Error::Invalid(_))), "{err:?}");
}

#[tokio::test]
async fn a_containers_terminal_is_resized_through_its_shim() {
    let env = Env::new();
    let pod = env.sandbox("console", false);
    let script = "trap 'stty size' WINCH; echo ready; while :; do sleep 0.1; done";
    let mut config = env.config(&pod, script);
    config.tty = true;
    let id = config.id.clone();
    env.run(config).await;
    env.wait_for_output(&id, "ready").await;
    // A runtime opened afresh (as after a minik restart) talks to the same shim.
    let fresh = super::env::open(env.dir.path());
    fresh.resize_console(&id, 120, 40).unwrap();
    env.wait_for_output(&id, "40 120").await;
}

#[tokio::test]
async fn dial_connects_inside_the_sandboxs_network_namespace() {
    let env = Env::new();
    let pod = env.sandbox("forward", false);
    let config = env.config(&pod, "echo pong | nc -l -p 8080");
    let id = config.id.clone();
    env.run(config).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match env.runtime.dial(&pod, 8080).await {
            Ok(stream) => break stream,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    stream.set_nonblocking(true).unwrap();
    let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
    stream.write_all(b"ping\n").await.unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "pong\n").await;
    stream.shutdown().await.unwrap();
    env.wait_for_output(&id, "ping").await;

    let err = env.runtime.dial(&pod, 8081).await.expect_err("refused");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "failed to connect to localhost:8081 inside namespace \"{pod}\", IPv4: "
        )) && message.contains("connection refused"),
        "{message}"
    );
}

#[tokio::test]
async fn a_container_can_join_a_targets_pid_namespace() {
    let env = Env::new();
    let (pod, target) = sleeper(&env, "debug").await;
    let debug = ContainerConfig {
        target_pid_ns: Some(target.clone()),
        ..env.config(&pod, "cat /proc/1/cmdline; echo; ps -o args")
    };
    let id = debug.id.clone();
    env.run(debug).await;
    env.assert_exit_code(&id, 0).await;
    let out = env.stdout(&id);
    assert_eq!(out[0], "sleep\u{0}1000\u{0}", "{out:?}");
    assert!(out.iter().any(|l| l == "sleep 1000"), "{out:?}");

    // A target that is not running is refused before anything is made.
    let stopped = ContainerConfig {
        target_pid_ns: Some("no-such-container".into()),
        ..env.config(&pod, "true")
    };
    let err = env.runtime.start_container(stopped).await.err();
    assert!(matches!(err, Some(Error::Invalid(_))), "{err:?}");
}

#[tokio::test]
async fn the_embedded_backend_streams_execs_and_forwards_ports() {
    let env = Env::new();
    let (pod, id) = sleeper(&env, "backend").await;
    let backend = Embedded {
        runtime: env.runtime.clone(),
        images: ImageStore::open(&env.dir.path().join("images")).unwrap(),
        registries: Default::default(),
        network: None,
    };
    // stdout not asked for is drained: far more than a pipe holds does not block it.
    let script = "seq 1 200000; echo done >&2";
    let streams = backend
        .exec_streams(&id, &argv(&["sh", "-c", script]), None, false, false, true)
        .await
        .unwrap();
    assert!(streams.stdin.is_none() && streams.stdout.is_none() && streams.resize.is_none());
    assert_eq!(read_all(streams.stderr.unwrap()).await, "done\n");
    assert_eq!(streams.exit.await, Ok(0));

    // Dropping the streams (the client went away) kills the process.
    let sleeping = || async {
        let ps = argv(&["ps", "-o", "args"]);
        let r = env
            .runtime
            .exec(&id, &ps, &[], Duration::from_secs(10))
            .await;
        String::from_utf8_lossy(&r.unwrap().output)
            .matches("sleep")
            .count()
    };
    let streams = backend
        .exec_streams(
            &id,
            &argv(&["sleep", "1000"]),
            Some(minik_streaming::TerminalSize {
                width: 0,
                height: 0,
            }),
            true,
            true,
            false,
        )
        .await
        .unwrap();
    assert!(streams.resize.is_some() && streams.stderr.is_none());
    assert_eq!(sleeping().await, 2);
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleeping().await != 1 {
        assert!(Instant::now() < deadline, "the exec'd sleep still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let listener = env.config(&pod, "echo pong | nc -l -p 9090");
    env.run(listener).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match backend.port_forward(&pod, 9090).await {
            Ok(conn) => break conn,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut seen = String::new();
    read_until(&mut conn, &mut seen, "pong\n").await;
}
