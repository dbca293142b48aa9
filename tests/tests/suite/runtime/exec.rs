//! Runtime::exec: a command run in a running container shares its namespaces (pid, mount,
//! network, uts), cgroup, user and environment; exit codes, output, a missing program and
//! the timeout.

use std::time::Duration;

use minik_runtime::{ContainerConfig, Error, Security};

use super::env::Env;

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

const SECOND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn exec_runs_inside_the_container() {
    let env = Env::new();
    let pod = env.sandbox("exec-host", false);
    let config = env.config(
        &pod,
        "readlink /proc/self/ns/net; cat /proc/self/cgroup; echo ready; exec sleep 1000",
    );
    let config = ContainerConfig {
        env: vec!["PATH=/bin".into(), "GREETING=hello".into()],
        working_dir: "/tmp".into(),
        security: Security {
            uid: 1000,
            gid: 1000,
            ..Security::default()
        },
        ..config
    };
    let id = config.id.clone();
    env.run(config).await;
    env.wait_for_output(&id, "ready").await;
    let init = env.stdout(&id);
    let rt = &env.runtime;

    // The container's hostname, working directory, user and environment.
    let script = "hostname; pwd; id -u; echo $GREETING $EXTRA; \
        readlink /proc/self/ns/net; cat /proc/self/cgroup; echo to-stderr >&2";
    let r = rt
        .exec(
            &id,
            &argv(&["sh", "-c", script]),
            &argv(&["EXTRA=world"]),
            SECOND,
        )
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.output).to_string();
    assert_eq!(r.exit_code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..4],
        ["exec-host", "/tmp", "1000", "hello world"],
        "{out}"
    );
    assert_eq!(lines[4], init[0], "the container's network namespace");
    // Every cgroup line of the container (its cgroup in each hierarchy) is the exec's too.
    for line in &init[1..init.len() - 1] {
        assert!(out.contains(line), "cgroup {line} missing from {out}");
    }
    assert!(out.ends_with("to-stderr\n"), "{out}");

    // Its pid namespace: the container's init is pid 1 there.
    let r = rt
        .exec(&id, &argv(&["cat", "/proc/1/cmdline"]), &[], SECOND)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.output), "sleep\u{0}1000\u{0}");

    // Exit codes, and a program that is not there.
    let r = rt
        .exec(&id, &argv(&["sh", "-c", "exit 3"]), &[], SECOND)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 3);
    let missing = rt.exec(&id, &argv(&["no-such-program"]), &[], SECOND).await;
    assert!(
        matches!(&missing, Err(Error::Failed(m)) if m.contains("not found")),
        "{missing:?}"
    );

    // A timeout kills it.
    let slow = rt
        .exec(
            &id,
            &argv(&["sh", "-c", "echo started; exec sleep 1000"]),
            &[],
            Duration::from_millis(500),
        )
        .await;
    assert!(matches!(slow, Err(Error::Timeout(_))), "{slow:?}");
    let r = rt
        .exec(
            &id,
            &argv(&["sh", "-c", "ps -o comm | grep -c sleep"]),
            &[],
            SECOND,
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.output).trim(),
        "1",
        "only the init sleeps"
    );

    // Output is capped.
    let r = rt
        .exec(
            &id,
            &argv(&["sh", "-c", "yes | head -c 100000"]),
            &[],
            SECOND,
        )
        .await
        .unwrap();
    assert_eq!(r.output.len(), minik_runtime::container::MAX_OUTPUT);

    rt.stop_container(&id, Duration::ZERO).await.unwrap();
    let stopped = rt.exec(&id, &argv(&["true"]), &[], SECOND).await;
    assert!(matches!(stopped, Err(Error::Invalid(_))), "{stopped:?}");
}
