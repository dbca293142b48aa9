//! The manifests embedded in the binary (from manifests/ at the repository root), written
//! into the manifests directory at start as k3s does: a changed file is rewritten, a
//! disabled one (`--disable NAME`) removed, so that its objects are deleted.

use std::io;
use std::path::Path;

/// (name, content): written as `<name>.yaml`; `--disable <name>` turns it off.
pub const EMBEDDED: &[(&str, &str)] = &[(
    "local-storage",
    include_str!("../../../../manifests/local-storage.yaml"),
)];

/// Write the embedded manifests into `dir` (made if missing), except the `disabled` ones,
/// whose files are removed.
pub fn write(dir: &Path, disabled: &[String]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, content) in EMBEDDED {
        let path = dir.join(format!("{name}.yaml"));
        if disabled.iter().any(|d| d == name) {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(manifest = %path.display(), "disabled: removed"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        if std::fs::read(&path).is_ok_and(|old| old == content.as_bytes()) {
            continue;
        }
        // Written aside and renamed, so the deployer never reads half a file (names
        // starting with '.' are not applied).
        let tmp = dir.join(format!(".{name}.yaml.tmp"));
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_restores_and_removes_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("server").join("manifests");
        write(&d, &[]).unwrap();
        let file = d.join("local-storage.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("name: local-path"), "{text}");
        // A file the user changed is rewritten at start.
        std::fs::write(&file, "changed").unwrap();
        write(&d, &["other".to_string()]).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
        // A disabled one is removed, and not written again.
        write(&d, &["local-storage".to_string()]).unwrap();
        assert!(!file.exists());
        write(&d, &["local-storage".to_string()]).unwrap();
        assert!(!file.exists());
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert!(names.is_empty(), "no temporary files left: {names:?}");
    }

    #[test]
    fn embedded_manifests_parse() {
        for (name, content) in EMBEDDED {
            let objs = super::super::files::parse(&format!("{name}.yaml"), content).unwrap();
            assert!(!objs.is_empty(), "{name}");
        }
    }
}
