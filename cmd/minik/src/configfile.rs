//! The config file (/etc/minik/config.yaml and config.yaml.d/): its keys become flags.
//!
//! As k3s: the file (`--config`/`-c`, or `$MINIK_CONFIG_FILE`, else /etc/minik/config.yaml)
//! and then every `*.yaml` of `<file>.d/` in name order are read; a later file's key replaces
//! an earlier one, a key ending in `+` appends to it. Keys are the long flag names of
//! `minik server` or `minik agent`; they are put in as flags right after the subcommand, and
//! a flag the user gave on the command line wins over the file (the file's key is dropped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{ArgAction, CommandFactory};
use serde_json::Value;

/// The config file read when none is named.
const DEFAULT_FILE: &str = "/etc/minik/config.yaml";
/// The environment variable naming the config file.
const ENV_FILE: &str = "MINIK_CONFIG_FILE";
/// The subcommands that read the config file.
const SUBCOMMANDS: [&str; 2] = ["server", "agent"];

/// The command line with the config file's keys added as flags.
pub fn expand(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    expand_with(args, std::env::var_os(ENV_FILE).filter(|v| !v.is_empty()))
}

/// `expand` with the value of `$MINIK_CONFIG_FILE` given.
fn expand_with(args: Vec<OsString>, env_file: Option<OsString>) -> anyhow::Result<Vec<OsString>> {
    // Only global flags (no values) come before the subcommand.
    let Some(at) = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|i| i + 1)
    else {
        return Ok(args);
    };
    let Some(sub) = args[at].to_str().filter(|s| SUBCOMMANDS.contains(s)) else {
        return Ok(args);
    };
    let flags = Flags::of(sub)?;
    let user = &args[at + 1..];
    let given = flags.given(&args[1..]);
    if given.contains("help") || given.contains("version") {
        return Ok(args);
    }
    let (file, named) = match (flags.last_value(user, "config"), env_file) {
        (Some(v), _) | (None, Some(v)) => (PathBuf::from(v), true),
        (None, None) => (PathBuf::from(DEFAULT_FILE), false),
    };
    let keys = read_all(&file, named)?;
    let extra = flags.to_args(sub, &keys, &given)?;
    let mut out = args[..=at].to_vec();
    out.extend(extra);
    out.extend_from_slice(user);
    Ok(out)
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `--flag` (true) or nothing (false).
    Bool,
    /// `--flag VALUE`, once.
    Single,
    /// `--flag VALUE`, repeatable.
    List,
    /// --help, --version: not for a config file.
    Other,
}

/// The flags of one subcommand (its own and the global ones), by long name.
struct Flags {
    kinds: HashMap<String, Kind>,
    /// Long names of aliases and short flags.
    aliases: HashMap<String, String>,
    shorts: HashMap<char, String>,
}

impl Flags {
    fn of(sub: &str) -> anyhow::Result<Flags> {
        let mut root = crate::cli::Cli::command();
        root.build();
        let Some(cmd) = root.find_subcommand(sub) else {
            bail!("no subcommand {sub}");
        };
        let mut flags = Flags {
            kinds: HashMap::new(),
            aliases: HashMap::new(),
            shorts: HashMap::new(),
        };
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let kind = match arg.get_action() {
                ArgAction::SetTrue => Kind::Bool,
                ArgAction::Set => Kind::Single,
                ArgAction::Append => Kind::List,
                _ => Kind::Other,
            };
            flags.kinds.insert(long.to_string(), kind);
            for alias in arg.get_all_aliases().unwrap_or_default() {
                flags.aliases.insert(alias.to_string(), long.to_string());
            }
            let shorts = arg.get_short().into_iter();
            for c in shorts.chain(arg.get_all_short_aliases().unwrap_or_default()) {
                flags.shorts.insert(c, long.to_string());
            }
        }
        Ok(flags)
    }

    /// The long name of `--name`, if it is a flag.
    fn long(&self, name: &str) -> Option<&str> {
        if let Some((k, _)) = self.kinds.get_key_value(name) {
            return Some(k);
        }
        self.aliases.get(name).map(String::as_str)
    }

    fn takes_value(&self, long: &str) -> bool {
        matches!(self.kinds.get(long), Some(Kind::Single | Kind::List))
    }

    /// Every flag in `args` with its value (None for a boolean flag), in order.
    fn occurrences(&self, args: &[OsString]) -> Vec<(String, Option<OsString>)> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let text = arg.to_string_lossy();
            if text == "--" {
                break;
            }
            if let Some(rest) = text.strip_prefix("--") {
                let (name, inline) = match rest.split_once('=') {
                    Some((n, v)) => (n, Some(OsString::from(v))),
                    None => (rest, None),
                };
                let Some(long) = self.long(name) else {
                    continue;
                };
                let value = match inline {
                    Some(v) => Some(v),
                    None if self.takes_value(long) => it.next().cloned(),
                    None => None,
                };
                out.push((long.to_string(), value));
            } else if let Some(rest) = text.strip_prefix('-') {
                for (i, c) in rest.char_indices() {
                    let Some(long) = self.shorts.get(&c) else {
                        break;
                    };
                    if !self.takes_value(long) {
                        out.push((long.clone(), None));
                        continue;
                    }
                    let tail = &rest[i + c.len_utf8()..];
                    let value = if tail.is_empty() {
                        it.next().cloned()
                    } else {
                        Some(OsString::from(tail.strip_prefix('=').unwrap_or(tail)))
                    };
                    out.push((long.clone(), value));
                    break;
                }
            }
        }
        out
    }

    /// The long names of the flags given in `args`.
    fn given(&self, args: &[OsString]) -> HashSet<String> {
        self.occurrences(args).into_iter().map(|(l, _)| l).collect()
    }

    /// The value of the last `--name` in `args`.
    fn last_value(&self, args: &[OsString], name: &str) -> Option<OsString> {
        self.occurrences(args)
            .into_iter()
            .filter(|(l, _)| l == name)
            .filter_map(|(_, v)| v)
            .next_back()
    }

    /// The flags the config file's keys stand for (keys the user gave as flags dropped).
    fn to_args(
        &self,
        sub: &str,
        keys: &BTreeMap<String, (Value, PathBuf)>,
        given: &HashSet<String>,
    ) -> anyhow::Result<Vec<OsString>> {
        let mut out = Vec::new();
        for (key, (value, file)) in keys {
            let bad = |why: &str| anyhow::anyhow!("{}: key {key:?}: {why}", file.display());
            let kind = match self.long(key) {
                Some("config") => return Err(bad("the config file cannot name another")),
                Some(long) if long == key => self.kinds.get(long).copied(),
                _ => None,
            };
            let Some(kind) = kind.filter(|k| *k != Kind::Other) else {
                return Err(bad(&format!("not a flag of `minik {sub}`")));
            };
            let values = match value {
                Value::Array(items) if kind == Kind::List => items.iter().collect(),
                Value::Array(_) => return Err(bad("takes one value, not a list")),
                v => vec![v],
            };
            let mut texts = Vec::new();
            for v in values {
                texts.push(
                    scalar(v).ok_or_else(|| bad("values must be strings, numbers or booleans"))?,
                );
            }
            if given.contains(key) {
                continue;
            }
            if kind == Kind::Bool {
                match texts.first().map(String::as_str) {
                    Some("true") => out.push(OsString::from(format!("--{key}"))),
                    Some("false") => {}
                    _ => return Err(bad("must be true or false")),
                }
                continue;
            }
            out.extend(texts.iter().map(|t| OsString::from(format!("--{key}={t}"))));
        }
        Ok(out)
    }
}

/// A YAML scalar as a flag value.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The keys of `file` and `<file>.d/*.yaml` merged, each with the file that set it last.
/// A missing `file` is an error only when the user `named` it.
fn read_all(file: &Path, named: bool) -> anyhow::Result<BTreeMap<String, (Value, PathBuf)>> {
    let mut files = Vec::new();
    match std::fs::metadata(file) {
        Ok(_) => files.push(file.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {}
        Err(e) => return Err(e).with_context(|| format!("config file {}", file.display())),
    }
    let mut dropins = OsString::from(file.as_os_str());
    dropins.push(".d");
    files.extend(dropin_files(Path::new(&dropins))?);
    let mut keys: BTreeMap<String, (Value, PathBuf)> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("config file {}", path.display()))?;
        for (key, value) in
            parse(&text).with_context(|| format!("config file {}", path.display()))?
        {
            merge(&mut keys, key, value, &path);
        }
    }
    Ok(keys)
}

/// The `*.yaml` and `*.yml` files of a drop-in directory, by name (none if it is missing).
fn dropin_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("config directory {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("config directory {}", dir.display()))?
            .path();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The keys of one file, in order (an empty file has none).
fn parse(text: &str) -> anyhow::Result<Vec<(String, Value)>> {
    // `0644` (a file mode) stays "0644", not the number 644.
    let options = serde_saphyr::options! { leading_zero_numbers_as_strings: true };
    let doc: Value =
        serde_saphyr::from_str_with_options(text, options).context("not valid YAML")?;
    match doc {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => Ok(map.into_iter().collect()),
        _ => bail!("not a map of flag names to values"),
    }
}

/// Add one key: `key` replaces, `key+` appends to the list so far.
fn merge(keys: &mut BTreeMap<String, (Value, PathBuf)>, key: String, value: Value, file: &Path) {
    let Some(base) = key.strip_suffix('+') else {
        keys.insert(key, (value, file.to_path_buf()));
        return;
    };
    let as_list = |v: Value| match v {
        Value::Array(items) => items,
        v => vec![v],
    };
    let mut items = keys
        .remove(base)
        .map(|(v, _)| as_list(v))
        .unwrap_or_default();
    items.extend(as_list(value));
    keys.insert(base.to_string(), (Value::Array(items), file.to_path_buf()));
}

#[cfg(test)]
mod tests;
