//! What the command line says about admission: which plugins, and the
//! AdmissionConfiguration file that configures them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// `--enable-admission-plugins`, `--disable-admission-plugins`,
/// `--admission-control-config-file`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    pub config_file: Option<PathBuf>,
}

/// Each plugin's configuration object, by plugin name.
#[derive(Debug, Default)]
pub struct PluginConfigs(HashMap<String, Value>);

impl PluginConfigs {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading admission configuration {}: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| {
        format!(
            "admission configuration {} is not valid YAML: {e}",
            path.display()
        )
    })
}

impl Options {
    /// The plugin configurations the file gives (none without a file).
    pub(crate) fn configs(&self) -> Result<PluginConfigs, String> {
        let Some(path) = &self.config_file else {
            return Ok(PluginConfigs::default());
        };
        let doc = read(path)?;
        let bad = |why: &str| format!("admission configuration {}: {why}", path.display());
        if doc.get("kind").and_then(Value::as_str) != Some("AdmissionConfiguration") {
            return Err(bad("kind must be AdmissionConfiguration"));
        }
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            api_version,
            "apiserver.config.k8s.io/v1" | "apiserver.k8s.io/v1alpha1"
        ) {
            return Err(bad(&format!(
                "apiVersion {api_version:?} is not apiserver.config.k8s.io/v1"
            )));
        }
        let mut out = HashMap::new();
        for entry in doc
            .get("plugins")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a plugin entry has no name"))?;
            let known = crate::PLUGINS.iter().any(|(p, _)| *p == name)
                || crate::SERVER_PLUGINS.iter().any(|(p, _)| *p == name)
                || crate::ABSENT.contains(&name);
            if !known {
                return Err(bad(&format!("plugin {name:?} is unknown")));
            }
            let config = match (entry.get("configuration"), entry.get("path")) {
                (Some(c), _) => c.clone(),
                (None, Some(Value::String(p))) => {
                    let p = Path::new(p);
                    let full = match path.parent() {
                        Some(dir) if p.is_relative() => dir.join(p),
                        _ => p.to_path_buf(),
                    };
                    read(&full)?
                }
                _ => {
                    return Err(bad(&format!(
                        "plugin {name:?} has no configuration or path"
                    )));
                }
            };
            out.insert(name.to_string(), config);
        }
        Ok(PluginConfigs(out))
    }
}
