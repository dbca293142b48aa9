//! The manifests directory: which files are applied (as k3s: `*.yaml`, `*.yml`, `*.json`,
//! not hidden ones, not one with a `<name>.skip` beside it), and the objects a file holds
//! (multi-document YAML, `List` kinds flattened).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What a scan of the directory found.
#[derive(Debug, Default, PartialEq)]
pub struct Scan {
    /// Files to apply: (name relative to the directory, path), by name.
    pub files: Vec<(String, PathBuf)>,
    /// Manifests turned off by a `.skip` file: left as they are (their objects are kept).
    pub skipped: BTreeSet<String>,
}

/// The manifest files under `dir` and its subdirectories (hidden ones not entered).
pub fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut scan = Scan::default();
    walk(dir, "", &mut scan)?;
    scan.files.sort();
    Ok(scan)
}

fn walk(dir: &Path, prefix: &str, scan: &mut Scan) -> std::io::Result<()> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        names.push((name, entry.path(), entry.file_type()?.is_dir()));
    }
    let skips: BTreeSet<&str> = names
        .iter()
        .filter_map(|(n, _, _)| n.strip_suffix(".skip"))
        .collect();
    for (name, path, is_dir) in &names {
        let rel = format!("{prefix}{name}");
        if name.starts_with('.') {
            continue;
        }
        if *is_dir {
            walk(path, &format!("{rel}/"), scan)?;
        } else if !is_manifest(name) {
            continue;
        } else if skips.contains(name.as_str()) {
            scan.skipped.insert(rel);
        } else {
            scan.files.push((rel, path.clone()));
        }
    }
    Ok(())
}

/// Whether a file name is a manifest's (by its extension).
pub fn is_manifest(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|e| lower.ends_with(e))
}

/// The objects of one file, in order: each with apiVersion, kind and metadata.name.
pub fn parse(name: &str, text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = if name.to_ascii_lowercase().ends_with(".json") {
        vec![serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?]
    } else {
        serde_saphyr::from_multiple(text).map_err(|e| format!("not valid YAML: {e}"))?
    };
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        flatten(doc, &mut out).map_err(|e| format!("document {}: {e}", i + 1))?;
    }
    Ok(out)
}

/// Add `doc` to `out`, or its items if it is a List.
fn flatten(doc: Value, out: &mut Vec<Value>) -> Result<(), String> {
    if doc.is_null() {
        return Ok(());
    }
    let text = |field: &str| doc.get(field).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if !doc.is_object() || api_version.is_empty() || kind.is_empty() {
        return Err("not a Kubernetes object (no apiVersion and kind)".into());
    }
    if kind.ends_with("List")
        && let Some(Value::Array(items)) = doc.get("items")
    {
        for item in items.clone() {
            flatten(item, out)?;
        }
        return Ok(());
    }
    let name = doc.pointer("/metadata/name").and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        return Err(format!("{kind} without metadata.name"));
    }
    out.push(doc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(objs: &[Value]) -> Vec<String> {
        objs.iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"]))
            .collect()
    }

    #[test]
    fn multi_document_yaml_and_lists() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# only a \
                    comment\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  \
                    kind: Secret\n  metadata: {name: b}\n- apiVersion: v1\n  kind: \
                    ConfigMapList\n  items:\n  - {apiVersion: v1, kind: ConfigMap, metadata: \
                    {name: c}}\n";
        let objs = parse("x.yaml", text).unwrap();
        assert_eq!(
            names(&objs),
            ["ConfigMap/\"a\"", "Secret/\"b\"", "ConfigMap/\"c\""]
        );
    }

    #[test]
    fn json_files() {
        let text = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n"}}"#;
        assert_eq!(names(&parse("x.JSON", text).unwrap()), ["Namespace/\"n\""]);
        assert!(parse("x.json", "{").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn bad_documents_are_errors() {
        assert!(
            parse("x.yaml", "a: [")
                .unwrap_err()
                .contains("not valid YAML")
        );
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nfoo: 1\n",
        )
        .unwrap_err();
        assert!(e.contains("document 2") && e.contains("apiVersion"), "{e}");
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}\n",
        )
        .unwrap_err();
        assert!(e.contains("metadata.name"), "{e}");
        assert!(parse("x.yaml", "").unwrap().is_empty());
    }

    #[test]
    fn which_files_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "a.yaml",
            "b.yml",
            "c.json",
            "d.txt",
            ".hidden.yaml",
            "e.yaml",
            "e.yaml.skip",
            "f.yaml.skip",
            "g.YAML",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/h.yaml"), "").unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join(".git/i.yaml"), "").unwrap();
        let scan = scan(d).unwrap();
        let taken: Vec<&str> = scan.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(taken, ["a.yaml", "b.yml", "c.json", "g.YAML", "sub/h.yaml"]);
        assert_eq!(scan.skipped.iter().collect::<Vec<_>>(), ["e.yaml"]);
        assert_eq!(scan.files[0].1, d.join("a.yaml"));
    }
}
