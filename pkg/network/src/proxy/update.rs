//! Two ways to put a rendered table (render.rs) in place, each one nft transaction:
//!
//! - `recreate`: delete the table (if any) and create it anew. Always right, but it also
//!   forgets the session-affinity sets' contents.
//! - `update`: flush every rule and verdict map, delete the chains and sets that are gone,
//!   and add the new contents; the affinity sets that remain keep their clients. It needs
//!   the names the table had (`Objects` of the last applied body).

use std::collections::BTreeSet;
use std::fmt::Write;

/// The verdict maps, flushed before each update.
const MAPS: [&str; 4] = [
    "service-ips",
    "service-nodeports",
    "no-endpoint-services",
    "no-endpoint-nodeports",
];

/// The chains and sets a rendered body declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
}

impl Objects {
    /// Read them off a body from render.rs: its table-level declarations are the lines
    /// starting with exactly one tab.
    pub fn of(body: &str) -> Objects {
        let mut objects = Objects::default();
        for line in body.lines() {
            let name = |rest: &str| rest.trim_end_matches(" {").to_string();
            if let Some(rest) = line.strip_prefix("\tchain ") {
                objects.chains.insert(name(rest));
            } else if let Some(rest) = line.strip_prefix("\tset ") {
                objects.sets.insert(name(rest));
            }
        }
        objects
    }
}

/// Replace the table by `body` whatever was there (create-then-delete makes the delete safe
/// when the table is absent).
pub fn recreate(table: &str, body: &str) -> String {
    format!("table {table} {{}}\ndelete table {table}\n{body}")
}

/// Turn the table applied from a body declaring `previous` into `body` (declaring `next`).
pub fn update(table: &str, previous: &Objects, next: &Objects, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = writeln!(out, "flush table {table}");
    for map in MAPS {
        let _ = writeln!(out, "flush map {table} {map}");
    }
    // Nothing refers to them any more: their rules and map elements were flushed above.
    for chain in previous.chains.difference(&next.chains) {
        let _ = writeln!(out, "delete chain {table} {chain}");
    }
    for set in previous.sets.difference(&next.sets) {
        let _ = writeln!(out, "delete set {table} {set}");
    }
    out.push_str(body);
    out
}
