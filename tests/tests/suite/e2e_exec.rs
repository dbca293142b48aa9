//! `kubectl exec`, `cp` and `attach` against a real node, with the machine's kubectl and
//! PyPI's newest, each over WebSocket (v5, what kubectl tries first) and over SPDY (kubectl
//! told not to use WebSockets): output on stdout and stderr, stdin, the command's exit code
//! as kubectl's, a terminal (driven through `script`'s pty) with its size, a file copied
//! both ways, attaching to a container's stdin and output, no process left behind when the
//! client goes away; then kube-rs's exec and attach (WebSocket v5/v4).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use minik_tests::node::{attach_answers, container, create, pod, pod_of, ready_node};
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set to "false", makes kubectl use SPDY for exec, attach and cp.
const NO_WEBSOCKETS: &str = "KUBECTL_REMOTE_COMMAND_WEBSOCKETS";

fn running(s: &Server, name: &str) {
    s.eventually(&format!("{name} running"), || {
        let p = pod(s, name)?;
        container(&p)["state"]["running"].is_object().then_some(())
    });
}

fn kubectl(k: &Kubectl, websockets: bool, args: &[&str]) -> Command {
    let mut c = k.cmd(args);
    c.env(NO_WEBSOCKETS, if websockets { "true" } else { "false" });
    c
}

fn with_stdin(mut c: Command, input: &str) -> std::process::Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl output")
}

/// A command line run under `script`, which gives it a terminal of 27 rows, 91 columns.
fn in_terminal(k: &Kubectl, websockets: bool, args: &str) -> std::process::Output {
    let line = format!(
        "stty rows 27 cols 91; {NO_WEBSOCKETS}={websockets} {} {args}",
        k.bin
    );
    // script's stdin stays open: at its end, script would type an end-of-file.
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("KUBECONFIG", &k.server.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let open = child.stdin.take();
    let out = child.wait_with_output().expect("script");
    drop(open);
    out
}

/// Whether a process whose command line is `cmdline` (NUL-separated) runs on the host.
fn process_running(cmdline: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| c == cmdline.as_bytes())
}

fn exec_works(s: &Server, k: &Kubectl, websockets: bool, tag: &str) {
    let how = format!("{} websockets={websockets}", k.bin);
    let out = kubectl(
        k,
        websockets,
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    )
    .output()
    .expect("kubectl exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n", "{how}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err\n"),
        "{how}"
    );
    assert_eq!(out.status.code(), Some(3), "{how}: {}", text(&out));

    let echoed = with_stdin(
        kubectl(k, websockets, &["exec", "-i", "shell", "--", "cat"]),
        "hello\nworld\n",
    );
    assert_eq!(ok(echoed), "hello\nworld\n", "{how}");

    let tty = in_terminal(
        k,
        websockets,
        "exec -it shell -- sh -c 'tty; stty size; exit 5'",
    );
    let said = String::from_utf8_lossy(&tty.stdout).into_owned();
    assert!(said.contains("/dev/pts/"), "{how}: {said}");
    assert!(said.contains("27 91"), "{how}: {said}");
    assert_eq!(tty.status.code(), Some(5), "{how}: {said}");

    // kubectl cp there and back.
    let dir = tempfile::tempdir().expect("temp dir");
    let local = dir.path().join("file.txt");
    let content = format!("copied {tag}\n{}\n", "x".repeat(100_000));
    std::fs::write(&local, &content).expect("write");
    let remote = format!("shell:/tmp/{tag}.txt");
    ok(kubectl(
        k,
        websockets,
        &["cp", local.to_str().expect("path"), &remote],
    )
    .output()
    .expect("kubectl cp"));
    let back = dir.path().join("back.txt");
    ok(kubectl(
        k,
        websockets,
        &["cp", &remote, back.to_str().expect("path")],
    )
    .output()
    .expect("kubectl cp"));
    assert_eq!(
        std::fs::read_to_string(&back).expect("read"),
        content,
        "{how}"
    );

    // attach: a line to the container's stdin comes back on its output. kubectl stays
    // attached while the container runs, as on any cluster: it is stopped once it showed it.
    let want = format!("got:ping-{tag}");
    let attach = kubectl(k, websockets, &["attach", "-i", "talker"]);
    let seen = attach_answers(attach, &format!("ping-{tag}"), &want);
    assert!(seen, "{how}: no {want}");

    // A client that goes away leaves no process behind.
    let secs = format!("{}", 7000 + tag.len() * 10 + usize::from(websockets));
    let mut child = kubectl(k, websockets, &["exec", "shell", "--", "sleep", &secs])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl exec");
    let cmdline = format!("sleep\0{secs}\0");
    s.eventually("the exec'd sleep runs", || {
        process_running(&cmdline).then_some(())
    });
    child.kill().expect("kill kubectl");
    let _ = child.wait();
    s.eventually("the exec'd sleep is gone", || {
        (!process_running(&cmdline)).then_some(())
    });
}

#[test]
fn exec_cp_and_attach_work_over_websocket_and_spdy() {
    let s = Server::start_node(&[]);
    ready_node(&s);
    create(
        &s,
        &pod_of(
            "shell",
            "busybox",
            json!({"command": ["sleep", "3600"]}),
            json!({}),
        ),
    );
    create(
        &s,
        &pod_of(
            "talker",
            "busybox",
            json!({"stdin": true, "command": ["sh", "-c", "while read l; do echo got:$l; done"]}),
            json!({}),
        ),
    );
    running(&s, "shell");
    running(&s, "talker");
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        for websockets in [true, false] {
            exec_works(
                &s,
                k,
                websockets,
                &format!("k{i}{}", if websockets { "ws" } else { "spdy" }),
            );
        }
    }
    // The API refuses what it cannot do, with a Status.
    let missing = s.kubectl(&["exec", "shell", "-c", "nope", "--", "true"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("container nope is not valid for pod shell"),
        "{}",
        text(&missing)
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pods: Api<Pod> = Api::default_namespaced(s.kube_client().await);
        let mut run = pods
            .exec(
                "shell",
                vec!["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 4"],
                &AttachParams::default().stdin(true).stderr(true),
            )
            .await
            .expect("kube-rs exec");
        let mut stdin = run.stdin().expect("stdin");
        stdin.write_all(b"kube\n").await.expect("write");
        let (mut stdout, mut stderr) =
            (run.stdout().expect("stdout"), run.stderr().expect("stderr"));
        let status = run.take_status().expect("status");
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.expect("stdout");
        let mut err = String::new();
        stderr.read_to_string(&mut err).await.expect("stderr");
        assert_eq!(out, "got-kube\n");
        assert_eq!(err, "oops\n");
        let status = tokio::time::timeout(Duration::from_secs(30), status)
            .await
            .expect("status in time")
            .expect("a status");
        assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
        assert_eq!(
            status.reason.as_deref(),
            Some("NonZeroExitCode"),
            "{status:?}"
        );
        let code = status
            .details
            .and_then(|d| d.causes)
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message);
        assert_eq!(code.as_deref(), Some("4"));
        run.join().await.expect("join");

        let mut attached = pods
            .attach("talker", &AttachParams::default().stdin(true).stderr(false))
            .await
            .expect("kube-rs attach");
        let mut stdin = attached.stdin().expect("stdin");
        stdin.write_all(b"from-kube\n").await.expect("write");
        let mut stdout = attached.stdout().expect("stdout");
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("got:from-kube") {
            let n = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut buf))
                .await
                .expect("output in time")
                .expect("read");
            assert!(
                n > 0,
                "the attachment ended: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        attached.abort();
    });
}
