//! Two ways to put a rendered table (render.rs) in place, each one nft transaction:
//!
//! - `recreate`: delete the table (if any) and create it anew. Always right, but it also
//!   forgets the session-affinity sets' contents.
//! - `update`: from the body applied last, change only what differs (refill the verdict
//!   maps, refill changed chains, delete what is gone, add what is new), so a sync after
//!   one endpoint changed is a small transaction, and the affinity sets that remain keep
//!   their clients.

#[cfg(test)]
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::fmt::Write;

/// The verdict maps, flushed before each update.
const MAPS: [&str; 4] = [
    "service-ips",
    "service-nodeports",
    "no-endpoint-services",
    "no-endpoint-nodeports",
];

/// The table-level declarations of a rendered body (chains, sets, maps), by kind and name,
/// each with its whole text, in the body's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocks<'a> {
    pub list: Vec<(&'a str, &'a str, &'a str)>,
    index: HashMap<(&'a str, &'a str), &'a str>,
}

impl<'a> Blocks<'a> {
    /// Read them off a body from render.rs: a declaration starts on a line with exactly
    /// one tab (`\tchain NAME {`) and ends at the next `\t}` line.
    pub fn of(body: &'a str) -> Blocks<'a> {
        let mut list = Vec::new();
        let mut open: Option<(&str, &str, usize)> = None;
        let mut at = 0;
        for line in body.split_inclusive('\n') {
            let start = at;
            at += line.len();
            let text = line.trim_end_matches('\n');
            if let Some((kind, name, from)) = open {
                if text == "\t}" {
                    list.push((kind, name, &body[from..at]));
                    open = None;
                }
                continue;
            }
            for kind in ["chain", "set", "map"] {
                let header = text.strip_prefix('\t').and_then(|t| t.strip_prefix(kind));
                if let Some(name) = header
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|r| r.strip_suffix(" {"))
                {
                    open = Some((kind, name, start));
                }
            }
        }
        let index = list.iter().map(|(k, n, t)| ((*k, *n), *t)).collect();
        Blocks { list, index }
    }

    fn get(&self, kind: &'a str, name: &'a str) -> Option<&'a str> {
        self.index.get(&(kind, name)).copied()
    }

    /// The names of one kind.
    #[cfg(test)]
    pub fn names(&self, kind: &str) -> BTreeSet<&'a str> {
        self.list
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, n, _)| *n)
            .collect()
    }
}

/// Replace the table by `body` whatever was there (create-then-delete makes the delete safe
/// when the table is absent).
pub fn recreate(table: &str, body: &str) -> String {
    format!("table {table} {{}}\ndelete table {table}\n{body}")
}

/// Turn the table applied from `previous` (a body) into `body`, touching only what
/// changed: the verdict maps are refilled, changed chains flushed and filled again, gone
/// chains and sets deleted, new ones added; unchanged chains and sets (and the clients the
/// affinity sets remember) stay as they are. A set whose declaration changed makes it a
/// whole-table update.
pub fn update(table: &str, previous: &str, body: &str) -> String {
    let (old, new) = (Blocks::of(previous), Blocks::of(body));
    let changed_set = new
        .list
        .iter()
        .any(|(k, n, t)| *k == "set" && old.get(k, n).is_some_and(|o| o != *t));
    let mut out = String::with_capacity(body.len() / 8 + 4096);
    if changed_set {
        let _ = writeln!(out, "flush table {table}");
    }
    for map in MAPS {
        let _ = writeln!(out, "flush map {table} {map}");
    }
    // Changed chains are refilled below; gone ones are emptied first, as they may name
    // each other.
    for (kind, name, text) in &old.list {
        if *kind == "chain" && !changed_set && new.get(kind, name) != Some(*text) {
            let _ = writeln!(out, "flush chain {table} {name}");
        }
    }
    // Nothing refers to them any more: the rules naming them were flushed above.
    // Chains first: a set goes only once the chains updating it are gone.
    for wanted in ["chain", "set"] {
        for (kind, name, text) in old.list.iter().filter(|(k, _, _)| *k == wanted) {
            let redeclared = changed_set && *kind == "set" && new.get(kind, name) != Some(*text);
            if new.get(kind, name).is_none() || redeclared {
                let _ = writeln!(out, "delete {kind} {table} {name}");
            }
        }
    }
    let _ = writeln!(out, "table {table} {{");
    for (kind, name, text) in &new.list {
        let same = old.get(kind, name) == Some(*text);
        if *kind == "map" || !same || (changed_set && *kind == "chain") {
            out.push_str(text);
        }
    }
    out.push_str("}\n");
    out
}
