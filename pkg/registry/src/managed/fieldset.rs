//! Sets of field paths, as server-side apply tracks ownership, and their FieldsV1 form:
//! nested objects keyed `f:<field>`, `k:<key fields>` (an item of a list-map), `v:<value>`
//! (an item of a set) or `i:<index>`, with `.` marking a node that is itself a member.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One path: its elements, e.g. `["f:spec", "f:containers", "k:{\"name\":\"a\"}", "f:image"]`.
pub type Path = Vec<String>;

/// A set of paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set(pub BTreeSet<Path>);

impl Set {
    pub fn insert(&mut self, p: &[String]) {
        self.0.insert(p.to_vec());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn union(&self, other: &Set) -> Set {
        Set(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &Set) -> Set {
        Set(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &Set) -> Set {
        Set(self.0.intersection(&other.0).cloned().collect())
    }

    /// The paths not under (or at) any path of `prefixes` (in place: no path is copied).
    pub fn without_prefixes(mut self, prefixes: &[Path]) -> Set {
        self.0
            .retain(|p| !prefixes.iter().any(|x| p.starts_with(x)));
        self
    }

    /// Only the paths under (or at) one of `prefixes` (in place).
    pub fn with_prefixes(mut self, prefixes: &[Path]) -> Set {
        self.0.retain(|p| prefixes.iter().any(|x| p.starts_with(x)));
        self
    }

    /// The paths of both (moved from `other`, not copied).
    pub fn absorb(&mut self, other: Set) {
        self.0.extend(other.0);
    }

    /// Drop the paths of `other`.
    pub fn remove_all(&mut self, other: &Set) {
        if !other.is_empty() {
            self.0.retain(|p| !other.0.contains(p));
        }
    }

    /// The FieldsV1 object of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        'paths: for path in &self.0 {
            let mut node = &mut root;
            for el in path {
                // Paths share their prefixes: a key is copied only the first time.
                if !node.contains_key(el.as_str()) {
                    node.insert(el.clone(), Value::Object(Map::new()));
                }
                match node.get_mut(el.as_str()).and_then(Value::as_object_mut) {
                    Some(child) => node = child,
                    None => continue 'paths,
                }
            }
            node.insert(".".into(), Value::Object(Map::new()));
        }
        // A member without children is written `{}`, not `{".": {}}`.
        fn tidy(node: &mut Map<String, Value>) {
            for (k, v) in node.iter_mut() {
                if k == "." {
                    continue;
                }
                if let Value::Object(child) = v {
                    if child.len() == 1 && child.contains_key(".") {
                        child.clear();
                    } else {
                        tidy(child);
                    }
                }
            }
        }
        tidy(&mut root);
        root.remove(".");
        Value::Object(root)
    }

    /// The set a FieldsV1 object describes.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        fn walk(node: &Value, path: &mut Path, out: &mut Set) -> Result<(), String> {
            let Value::Object(m) = node else {
                return Err("fieldsV1 nodes must be objects".into());
            };
            if m.is_empty() && !path.is_empty() {
                out.insert(path);
            }
            for (k, child) in m {
                if k == "." {
                    out.insert(path);
                    continue;
                }
                if !(k.starts_with("f:")
                    || k.starts_with("k:")
                    || k.starts_with("v:")
                    || k.starts_with("i:"))
                {
                    return Err(format!("unexpected fieldsV1 key {k:?}"));
                }
                path.push(k.clone());
                walk(child, path, out)?;
                path.pop();
            }
            Ok(())
        }
        let mut out = Set::default();
        walk(v, &mut Vec::new(), &mut out)?;
        Ok(out)
    }
}

/// Whether the FieldsV1 object `fields` has `path` as a member (as `Set::from_fields_v1`
/// reads it), without building the set.
pub fn member(fields: &Value, path: &[String]) -> bool {
    let mut node = fields;
    for el in path {
        match node.get(el) {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.as_object()
        .is_some_and(|m| m.contains_key(".") || m.is_empty() && !path.is_empty())
}

/// A path as server-side apply names it in conflicts: `.spec.containers[name="a"].image`.
pub fn display(path: &Path) -> String {
    let mut out = String::new();
    for el in path {
        let (kind, rest) = el.split_at(2.min(el.len()));
        match kind {
            "f:" => {
                out.push('.');
                out.push_str(rest);
            }
            "k:" => {
                let keys: Map<String, Value> = serde_json::from_str(rest).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            "v:" => out.push_str(&format!("[={rest}]")),
            _ => out.push_str(&format!("[{rest}]")),
        }
    }
    out
}
