//! The real `minik` binary: version, help for every subcommand, clear refusals, no panics.

use std::process::{Command, Output};

use minik_tests::{minik, minik_bin};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn version_names_minik_and_kubernetes() {
    let out = minik(&["--version"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("minik v0."), "{s}");
    assert!(s.contains("Kubernetes v1.37"), "{s}");
}

const SUBCOMMANDS: &[&[&str]] = &[
    &["server"],
    &["agent"],
    &["image"],
    &["image", "import"],
    &["image", "ls"],
    &["image", "pull"],
    &["image", "rm"],
    &["certificate"],
    &["certificate", "check"],
    &["certificate", "rotate"],
    &["token"],
    &["token", "create"],
    &["snapshot"],
    &["snapshot", "save"],
    &["snapshot", "restore"],
    &["check-config"],
];

#[test]
fn every_subcommand_has_help() {
    let top = text(&minik(&["--help"]));
    for name in [
        "server",
        "agent",
        "kubectl",
        "image",
        "certificate",
        "token",
        "snapshot",
        "check-config",
    ] {
        assert!(top.contains(name), "--help lists {name}:\n{top}");
    }
    for cmd in SUBCOMMANDS {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = minik(&args);
        assert!(out.status.success(), "minik {args:?}: {}", text(&out));
        let s = text(&out);
        assert!(s.contains("Usage: minik"), "minik {args:?}:\n{s}");
    }
    let server = text(&minik(&["server", "--help"]));
    for flag in [
        "--data-dir",
        "--https-listen-port",
        "--bind-address",
        "--write-kubeconfig",
        "--write-kubeconfig-mode",
        "--datastore-endpoint",
        "--token",
        "--disable",
        "--node-name",
        "--with-node-id",
    ] {
        assert!(server.contains(flag), "server --help documents {flag}");
    }
}

#[test]
fn server_refuses_bad_settings_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = minik(&[
        "server",
        "--data-dir",
        data.to_str().unwrap(),
        "--write-kubeconfig-mode",
        "rw-all",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not an octal file mode"),
        "{}",
        text(&out)
    );
    assert!(!data.exists());
    let out = minik(&[
        "server",
        "--data-dir",
        data.to_str().unwrap(),
        "--datastore-endpoint",
        "mysql://nope",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("datastore endpoint"), "{}", text(&out));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let cases: Vec<Vec<&OsStr>> = vec![
        vec![],
        vec![OsStr::new("frobnicate")],
        vec![
            OsStr::new("server"),
            OsStr::new("--https-listen-port"),
            OsStr::new("99999"),
        ],
        vec![
            OsStr::new("server"),
            OsStr::new("--bind-address"),
            OsStr::new("not-an-ip"),
        ],
        vec![OsStr::new("server"), OsStr::new("--data-dir")],
        vec![OsStr::new("image"), OsStr::new("rm")],
        vec![
            OsStr::new("server"),
            OsStr::new("--node-name"),
            OsStr::from_bytes(b"\xff\xfe"),
        ],
        vec![OsStr::new("--debug"), OsStr::new("--nope")],
    ];
    for args in cases {
        let out = Command::new(minik_bin()).args(&args).output().unwrap();
        let s = text(&out);
        assert!(!out.status.success(), "minik {args:?} should fail: {s}");
        assert_ne!(out.status.code(), Some(101), "minik {args:?} panicked: {s}");
        assert!(!s.contains("panicked"), "minik {args:?} panicked: {s}");
        assert!(
            s.contains("error") || s.contains("Usage"),
            "minik {args:?}: {s}"
        );
    }
}
