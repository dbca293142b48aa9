//! scripts/install.sh and the uninstaller it installs, run with bash into a temporary
//! install root (INSTALL_MINIK_ROOT): a dry run changes nothing; an install puts the binary,
//! the systemd unit with the command and flags, the env file (0600) and the uninstaller in
//! place; agent mode (MINIK_URL, MINIK_TOKEN) writes minik-agent.service; the uninstaller
//! removes what was installed (and only minik's pod logs); bad input is refused with a
//! clear message and changes nothing.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use minik_tests::minik_bin;

const UNIT: &str = "etc/systemd/system/minik.service";
const AGENT_UNIT: &str = "etc/systemd/system/minik-agent.service";
const BIN: &str = "usr/local/bin/minik";
const UNINSTALL: &str = "usr/local/bin/minik-uninstall.sh";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// A temporary directory holding the install root (`root/`) and a stand-in for the minik
/// binary that answers `--version` (copying the real one, hundreds of MB in a debug build,
/// is left to the test that runs it).
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let bin = dir.path().join("minik");
        std::fs::write(&bin, "#!/bin/sh\necho minik v0-fake\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// A command running `bash SCRIPT ARGS` under the install root, installing the
    /// stand-in binary, with none of the install and agent variables of the environment.
    fn bash(&self, script: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(script)
            .args(args)
            .env("INSTALL_MINIK_ROOT", self.root())
            .env("INSTALL_MINIK_BIN", self.dir.path().join("minik"));
        for var in [
            "MINIK_URL",
            "MINIK_TOKEN",
            "MINIK_DATA_DIR",
            "INSTALL_MINIK_EXEC",
            "INSTALL_MINIK_DRY_RUN",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Every path under the install root.
    fn tree(&self) -> BTreeSet<String> {
        tree(&self.root())
    }
}

fn run(mut c: Command) -> Output {
    c.output().expect("run bash")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn succeeded(out: Output) -> String {
    let t = text(&out);
    assert!(out.status.success(), "script failed: {t}");
    t
}

/// Every path under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            out.insert(rel);
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, root, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's `Key=` lines' values, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn dry_run_changes_nothing_and_names_every_path() {
    let s = Scratch::new();
    let out = succeeded(run(s.bash(
        &script("install.sh"),
        &["--dry-run", "server", "--disable", "coredns"],
    )));
    assert!(s.tree().is_empty(), "{:?}", s.tree());
    for path in [UNIT, BIN, UNINSTALL] {
        let full = s.path(path).display().to_string();
        assert!(out.contains(&full), "the dry run names {full}:\n{out}");
    }
    assert!(
        out.contains("ExecStart=/usr/local/bin/minik server --disable coredns"),
        "{out}"
    );

    // The same through the environment, against the real paths (nothing is written).
    let real_unit = Path::new("/etc/systemd/system/minik.service");
    let before = real_unit.exists();
    let mut c = s.bash(&script("install.sh"), &[]);
    c.env_remove("INSTALL_MINIK_ROOT")
        .env("INSTALL_MINIK_DRY_RUN", "1");
    let out = succeeded(run(c));
    assert!(
        out.contains("would write /etc/systemd/system/minik.service "),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(real_unit.exists(), before);
}

#[test]
fn install_puts_binary_unit_env_and_uninstaller_in_place() {
    let s = Scratch::new();
    let mut c = s.bash(
        &script("install.sh"),
        &[
            "server",
            "--disable",
            "coredns",
            "--kubelet-arg",
            "eviction-hard=memory.available<100Mi",
        ],
    );
    c.env("INSTALL_MINIK_EXEC", "--node-name n1")
        .env("INSTALL_MINIK_BIN", minik_bin());
    let out = succeeded(run(c));
    assert!(out.contains("systemctl not run"), "{out}");

    let bin = s.path(BIN);
    assert_eq!(mode(&bin), 0o755);
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("minik v0."),
        "{}",
        text(&version)
    );

    let unit = read(&s.path(UNIT));
    assert_eq!(
        unit_values(&unit, "ExecStart"),
        [
            "/usr/local/bin/minik server --node-name n1 --disable coredns \
          --kubelet-arg \"eviction-hard=memory.available<100Mi\""
        ]
    );
    for (key, value) in [
        ("Type", "exec"),
        ("Restart", "always"),
        ("KillMode", "process"),
        ("Delegate", "yes"),
        ("LimitNOFILE", "1048576"),
    ] {
        assert_eq!(unit_values(&unit, key), [value], "{key} in:\n{unit}");
    }
    assert_eq!(
        unit_values(&unit, "ExecStartPre"),
        ["-/sbin/modprobe br_netfilter", "-/sbin/modprobe overlay"]
    );
    assert!(
        unit_values(&unit, "EnvironmentFile")
            .contains(&"-/etc/systemd/system/minik.service.env".to_string())
    );
    assert_eq!(mode(&s.path(&format!("{UNIT}.env"))), 0o600);

    let uninstall = s.path(UNINSTALL);
    assert_eq!(mode(&uninstall), 0o755);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&uninstall)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", text(&syntax));
    assert!(read(&uninstall).contains("\nSERVICE=minik\n"));
}

#[test]
fn agent_mode_writes_agent_unit_and_private_env_file() {
    let s = Scratch::new();
    let mut c = s.bash(&script("install.sh"), &[]);
    c.env("MINIK_URL", "https://10.0.0.1:6443")
        .env("MINIK_TOKEN", "K10abc::server:s3cret");
    succeeded(run(c));

    assert!(!s.path(UNIT).exists());
    let unit = read(&s.path(AGENT_UNIT));
    assert_eq!(
        unit_values(&unit, "ExecStart"),
        ["/usr/local/bin/minik agent"]
    );
    assert!(!unit.contains("s3cret"), "the token stays out of the unit");
    assert!(
        unit_values(&unit, "EnvironmentFile")
            .contains(&"-/etc/systemd/system/minik-agent.service.env".to_string())
    );
    let env = s.path(&format!("{AGENT_UNIT}.env"));
    assert_eq!(mode(&env), 0o600);
    let env = read(&env);
    for line in [
        "MINIK_URL=\"https://10.0.0.1:6443\"",
        "MINIK_TOKEN=\"K10abc::server:s3cret\"",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in:\n{env}");
    }
    let uninstall = read(&s.path("usr/local/bin/minik-agent-uninstall.sh"));
    assert!(uninstall.contains("\nSERVICE=minik-agent\n"));
}

/// Files a running node would have made under the install root: config, data with one
/// pod, its log directory, another kubelet's pod log, run state.
fn node_files(s: &Scratch) {
    for dir in [
        "etc/minik",
        "var/lib/minik/db",
        "var/lib/minik/agent/pods/uid-1",
        "var/log/pods/default_web_uid-1/c",
        "var/log/pods/default_other_uid-2/c",
        "run/minik/sandboxes",
    ] {
        std::fs::create_dir_all(s.path(dir)).unwrap();
    }
    for file in [
        "etc/minik/minik.yaml",
        "var/lib/minik/db/state.db",
        "var/log/pods/default_web_uid-1/c/0.log",
        "var/log/pods/default_other_uid-2/c/0.log",
    ] {
        std::fs::write(s.path(file), "x").unwrap();
    }
}

#[test]
fn uninstaller_removes_what_was_installed() {
    let s = Scratch::new();
    succeeded(run(s.bash(&script("install.sh"), &[])));
    node_files(&s);
    let installed = s.tree();

    // A dry run changes nothing.
    let uninstall = s.path(UNINSTALL);
    let out = succeeded(run(s.bash(&uninstall, &["--dry-run"])));
    assert!(out.contains("would run"), "{out}");
    assert_eq!(s.tree(), installed);

    // --keep-config keeps /etc/minik; everything else of minik's goes.
    succeeded(run(s.bash(&uninstall, &["--keep-config"])));
    let expected: BTreeSet<String> = [
        "etc",
        "etc/minik",
        "etc/minik/minik.yaml",
        "etc/systemd",
        "etc/systemd/system",
        "usr",
        "usr/local",
        "usr/local/bin",
        "var",
        "var/lib",
        "var/log",
        "var/log/pods",
        "var/log/pods/default_other_uid-2",
        "var/log/pods/default_other_uid-2/c",
        "var/log/pods/default_other_uid-2/c/0.log",
        "run",
    ]
    .map(String::from)
    .into();
    assert_eq!(s.tree(), expected);
}

#[test]
fn uninstalling_the_agent_keeps_the_servers_files() {
    let s = Scratch::new();
    succeeded(run(s.bash(&script("install.sh"), &[])));
    let mut c = s.bash(&script("install.sh"), &[]);
    c.env("MINIK_URL", "https://10.0.0.1:6443")
        .env("MINIK_TOKEN", "t");
    succeeded(run(c));
    node_files(&s);

    let agent_uninstall = s.path("usr/local/bin/minik-agent-uninstall.sh");
    let out = succeeded(run(s.bash(&agent_uninstall, &[])));
    assert!(out.contains("minik is still installed"), "{out}");
    assert!(!s.path(AGENT_UNIT).exists());
    assert!(!agent_uninstall.exists());
    for kept in [UNIT, BIN, UNINSTALL, "var/lib/minik/db/state.db"] {
        assert!(s.path(kept).exists(), "{kept} is kept");
    }

    // The server's uninstaller then removes the rest.
    succeeded(run(s.bash(&s.path(UNINSTALL), &[])));
    let left = s.tree();
    for gone in [
        UNIT,
        BIN,
        UNINSTALL,
        "etc/minik",
        "var/lib/minik",
        "run/minik",
    ] {
        assert!(!left.contains(gone), "{gone} is removed: {left:?}");
    }
}

/// Run install.sh expecting it to fail; its output. Nothing may have been written.
fn refused(c: Command, s: &Scratch) -> String {
    let out = run(c);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(s.tree().is_empty(), "{:?}", s.tree());
    text(&out)
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let s = Scratch::new();
    let install = script("install.sh");

    let out = refused(s.bash(&install, &["--bin", "/nonexistent/minik"]), &s);
    assert!(
        out.contains("minik binary not found: /nonexistent/minik"),
        "{out}"
    );

    let plain = s.dir.path().join("plain");
    std::fs::write(&plain, "not a program").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = s.bash(&install, &[]);
    c.env("INSTALL_MINIK_BIN", &plain);
    let out = refused(c, &s);
    assert!(out.contains("is not an executable file"), "{out}");

    let out = refused(s.bash(&install, &["--bin", "/bin/true"]), &s);
    assert!(out.contains("is not a minik binary"), "{out}");

    let mut c = s.bash(&install, &[]);
    c.env("MINIK_URL", "https://10.0.0.1:6443");
    let out = refused(c, &s);
    assert!(out.contains("MINIK_TOKEN is not"), "{out}");

    let mut c = s.bash(&install, &[]);
    c.env("MINIK_URL", "http://10.0.0.1:6443")
        .env("MINIK_TOKEN", "t");
    let out = refused(c, &s);
    assert!(out.contains("must be an https:// URL"), "{out}");

    let out = refused(s.bash(&install, &["agent"]), &s);
    assert!(out.contains("an agent needs the server"), "{out}");

    let mut c = s.bash(&install, &[]);
    c.env("INSTALL_MINIK_ROOT", s.path("missing"));
    let out = refused(c, &s);
    assert!(out.contains("is not a directory"), "{out}");

    // Not root (an `id` that says uid 1000), without an install root: refused.
    let fake = tempfile::tempdir().unwrap();
    let id = fake.path().join("id");
    std::fs::write(&id, "#!/bin/sh\necho 1000\n").unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = s.bash(&install, &[]);
    c.env_remove("INSTALL_MINIK_ROOT").env("PATH", path);
    let out = refused(c, &s);
    assert!(out.contains("must run as root"), "{out}");
}
