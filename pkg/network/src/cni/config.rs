//! CNI network configuration: the first file by name in the configuration directory
//! ending .conflist, .conf or .json (as libcni picks it), read as a plugin list; a file
//! holding a single plugin is wrapped as a list of one. Files that do not parse are
//! skipped with a warning, as the kubelet does. Also CNI version numbers.

use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

use crate::pod::NetworkError;

/// A CNI spec version, e.g. 0.4.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// The first version with CHECK and with prevResult on DEL.
    pub const V0_4_0: Version = Version(0, 4, 0);
    /// The first version with the `ips`/`interfaces` result (0.3.0).
    pub const V0_3_0: Version = Version(0, 3, 0);
    /// The first version without `ips[].version`.
    pub const V1_0_0: Version = Version(1, 0, 0);

    /// Parses "1.0.0" (a missing minor or patch counts as 0); None if it is not a version.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.trim().split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version(major, minor, patch))
    }
}

/// A network configuration list: what libcni calls a NetworkConfigList.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// The network's name, injected into every plugin's config.
    pub name: String,
    /// The list's cniVersion, injected into every plugin's config when set.
    pub cni_version: Option<String>,
    /// `disableCheck`: CHECK is skipped.
    pub disable_check: bool,
    /// Each plugin's own configuration (each has a `type`).
    pub plugins: Vec<Map<String, Value>>,
    /// The list as JSON (what the result cache keeps).
    pub raw: Value,
}

impl NetworkList {
    /// Reads a list (an object with `plugins`) or a single plugin's config (wrapped).
    pub fn from_value(value: Value) -> Result<NetworkList, String> {
        let Value::Object(obj) = &value else {
            return Err("not a JSON object".into());
        };
        let name = match obj.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err("missing network name".into()),
        };
        let cni_version = match obj.get("cniVersion") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) if Version::parse(v).is_some() => Some(v.clone()),
            Some(v) => return Err(format!("invalid cniVersion {v}")),
        };
        let Some(plugins) = obj.get("plugins") else {
            let raw = wrap_single(&name, cni_version.as_deref(), obj.clone());
            return NetworkList::from_value(raw);
        };
        let Value::Array(items) = plugins else {
            return Err("plugins is not a list".into());
        };
        if items.is_empty() {
            return Err("the plugin list is empty".into());
        }
        let mut list = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Object(p) if matches!(p.get("type"), Some(Value::String(t)) if !t.is_empty()) => {
                    list.push(p.clone())
                }
                _ => return Err(format!("plugin {i} has no type")),
            }
        }
        let disable_check = matches!(obj.get("disableCheck"), Some(Value::Bool(true)));
        Ok(NetworkList {
            name,
            cni_version,
            disable_check,
            plugins: list,
            raw: value,
        })
    }

    /// The list's version; a list without one counts as the oldest (0.1.0).
    pub fn version(&self) -> Version {
        self.cni_version
            .as_deref()
            .and_then(Version::parse)
            .unwrap_or(Version(0, 1, 0))
    }

    /// The plugin's type (its executable's name).
    pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
        plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// What plugin `index` gets on stdin: its config with the list's name and cniVersion
    /// and, when given, prevResult injected.
    pub fn plugin_config(&self, index: usize, prev_result: Option<&Value>) -> Value {
        let mut conf = self.plugins.get(index).cloned().unwrap_or_default();
        conf.insert("name".into(), Value::String(self.name.clone()));
        if let Some(v) = &self.cni_version {
            conf.insert("cniVersion".into(), Value::String(v.clone()));
        }
        match prev_result {
            Some(prev) => conf.insert("prevResult".into(), prev.clone()),
            None => conf.remove("prevResult"),
        };
        Value::Object(conf)
    }
}

/// A single plugin's config as a list of one.
fn wrap_single(name: &str, version: Option<&str>, plugin: Map<String, Value>) -> Value {
    let mut list = Map::new();
    list.insert("name".into(), Value::String(name.into()));
    if let Some(v) = version {
        list.insert("cniVersion".into(), Value::String(v.into()));
    }
    list.insert("plugins".into(), Value::Array(vec![Value::Object(plugin)]));
    Value::Object(list)
}

/// Loads the network configuration from `dir`: the first valid file by name.
pub fn load(dir: &Path) -> Result<NetworkList, NetworkError> {
    let not_found =
        || NetworkError::NotReady(format!("no network config found in {}", dir.display()));
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(NetworkError::io(format!("reading {}", dir.display()))(e)),
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
        })
        .collect();
    files.sort();
    let mut last_problem = None;
    for file in files {
        let parsed = fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()))
            .and_then(NetworkList::from_value);
        match parsed {
            Ok(list) => return Ok(list),
            Err(problem) => {
                tracing::warn!(file = %file.display(), %problem, "skipping invalid CNI config");
                last_problem = Some(format!("{}: {problem}", file.display()));
            }
        }
    }
    match last_problem {
        Some(problem) => Err(NetworkError::NotReady(format!(
            "no valid network config found in {} ({problem})",
            dir.display()
        ))),
        None => Err(not_found()),
    }
}
