//! `kubectl logs` against a real node, with the machine's kubectl and PyPI's newest: the
//! API server's pods/log reaches the kubelet's /containerLogs over TLS and streams its
//! answer. tail, timestamps, limit-bytes, since, follow (lines arrive while they are
//! written), previous, several containers, a container that never started, bad options,
//! and kube-rs's `logs` and `log_stream`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use minik_tests::node::{container, create, pod, pod_of, ready_node};
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::json;

const COUNTER: &str = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done";

fn running(s: &Server, name: &str) {
    s.eventually(&format!("{name} running"), || {
        let p = pod(s, name)?;
        container(&p)["state"]["running"].is_object().then_some(())
    });
}

/// The number in the last "line N" of `out`.
fn last_index(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no line in {out:?}"))
}

fn follow_streams_new_lines(k: &Kubectl, before: u64) {
    let mut child = k
        .cmd(&["logs", "-f", "counter", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut newer = 0;
    while newer < 3 {
        assert!(Instant::now() < deadline, "no new lines followed");
        let line = lines.next().expect("a line").expect("utf-8");
        if last_index(&line) > before {
            newer += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kubectl_logs_serves_tail_since_limits_follow_and_previous() {
    let s = Server::start_node(&[]);
    ready_node(&s);
    create(
        &s,
        &pod_of(
            "counter",
            "busybox",
            json!({"command": ["sh", "-c", COUNTER]}),
            json!({}),
        ),
    );
    let two = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
        "spec": {"containers": [
            {"name": "a", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "echo from-a; sleep 3600"]},
            {"name": "b", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "echo from-b; sleep 3600"]}]}});
    create(&s, &two);
    create(
        &s,
        &pod_of(
            "crash",
            "busybox",
            json!({"command": ["sh", "-c", "echo run-$(date +%s%N); sleep 1; exit 1"]}),
            json!({}),
        ),
    );
    create(
        &s,
        &pod_of(
            "never",
            "not-here:1",
            json!({"imagePullPolicy": "Never"}),
            json!({}),
        ),
    );
    running(&s, "counter");
    s.eventually("counter wrote lines", || {
        let out = s.kubectl(&["logs", "counter"]);
        (text(&out).lines().count() >= 5).then_some(())
    });
    running(&s, "two");
    for k in Kubectl::each(&s) {
        let all = ok(k.run(&["logs", "counter"]));
        assert!(all.starts_with("line 0\nline 1\n"), "{}: {all}", k.bin);
        let tail = ok(k.run(&["logs", "counter", "--tail=2"]));
        assert_eq!(tail.lines().count(), 2, "{}: {tail}", k.bin);
        let stamped = ok(k.run(&["logs", "counter", "--tail=1", "--timestamps"]));
        let (time, rest) = stamped.trim_end().split_once(' ').expect("a timestamp");
        assert!(
            time.len() >= 20 && time.ends_with('Z') && time.contains('T'),
            "{time}"
        );
        assert!(rest.starts_with("line "), "{stamped}");
        assert_eq!(ok(k.run(&["logs", "counter", "--limit-bytes=5"])), "line ");
        assert!(ok(k.run(&["logs", "counter", "--since=1h"])).starts_with("line 0\n"));
        let before = last_index(&ok(k.run(&["logs", "counter", "--tail=1"])));
        follow_streams_new_lines(&k, before);

        // kubectl picks the first container itself, and says so.
        let first = k.run(&["logs", "two"]);
        assert_eq!(ok(first.clone()), "from-a\n");
        let said = String::from_utf8_lossy(&first.stderr).into_owned();
        assert!(
            said.contains("Defaulted container \"a\""),
            "{}: {said}",
            k.bin
        );
        assert_eq!(ok(k.run(&["logs", "two", "-c", "b"])), "from-b\n");
        let both = ok(k.run(&["logs", "two", "--all-containers"]));
        assert!(both.contains("from-a") && both.contains("from-b"), "{both}");

        let never = k.run(&["logs", "never"]);
        assert!(!never.status.success());
        assert!(
            text(&never).contains("container \"main\" in pod \"never\" is waiting to start"),
            "{}: {}",
            k.bin,
            text(&never)
        );
    }
    // By label: kubectl finds the pods, then asks each one's log.
    ok(s.kubectl(&["label", "pod", "counter", "app=counter"]));
    let labelled = ok(s.kubectl(&["logs", "-l", "app=counter", "--tail=1"]));
    assert!(labelled.starts_with("line "), "{labelled}");
    // The run before the current one (a restarted container).
    let previous = s.eventually("crash restarted", || {
        let out = s.kubectl(&["logs", "crash", "--previous"]);
        out.status.success().then(|| text(&out))
    });
    assert!(previous.starts_with("run-"), "{previous}");
    // The API itself wants a container name when there are several.
    let many = s.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"]);
    assert!(!many.status.success());
    assert!(
        text(&many)
            .contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{}",
        text(&many)
    );
    let bad = s.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/counter/log?tailLines=-5",
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("must be greater than or equal to 0"),
        "{}",
        text(&bad)
    );

    // kube-rs: a tail, then a stream that keeps giving lines.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pods: Api<Pod> = Api::default_namespaced(s.kube_client().await);
        let params = LogParams {
            tail_lines: Some(1),
            ..LogParams::default()
        };
        let last = pods.logs("counter", &params).await.expect("logs");
        assert!(last.starts_with("line "), "{last}");
        let follow = LogParams {
            follow: true,
            tail_lines: Some(1),
            ..LogParams::default()
        };
        let mut lines = pods
            .log_stream("counter", &follow)
            .await
            .expect("log stream")
            .lines();
        let before = last_index(&last);
        let mut seen = 0;
        while seen < 2 {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.try_next())
                .await
                .expect("a line in time")
                .expect("read")
                .expect("the stream open");
            if last_index(&line) > before {
                seen += 1;
            }
        }
    });
}
