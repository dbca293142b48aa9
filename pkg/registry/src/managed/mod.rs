//! managedFields: who owns which fields of an object. Every write records its manager
//! (an `Update` entry with the fields it changed, taken from others), and server-side apply
//! (`Apply` entries) merges a configuration, prunes what its manager stopped applying, and
//! refuses to change fields other managers own unless forced.

mod fieldset;
mod typed;

use minik_api::ResourceInfo;
use serde_json::{Value, json};

use crate::error::{ApiError, Cause, Result};
use fieldset::{Path, Set, display};

/// One managedFields entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Value,
    subresource: String,
    set: Set,
}

impl Entry {
    fn same_owner(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }
}

fn decode(list: Option<&Value>) -> Result<Vec<Entry>> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(decode_entry)
        .collect()
}

/// An entry's identity and time, without its fields.
fn head(e: &Value) -> Entry {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Entry {
        manager: s("manager"),
        operation: s("operation"),
        api_version: s("apiVersion"),
        time: e.get("time").cloned().unwrap_or(Value::Null),
        subresource: s("subresource"),
        set: Set::default(),
    }
}

fn decode_entry(e: &Value) -> Result<Entry> {
    let mut entry = head(e);
    if let Some(f) = e.get("fieldsV1") {
        entry.set = Set::from_fields_v1(f).map_err(|m| {
            ApiError::BadRequest(format!("metadata.managedFields: invalid fieldsV1: {m}"))
        })?;
    }
    Ok(entry)
}

fn encode_entry(e: &Entry) -> Value {
    let mut v = json!({"manager": e.manager, "operation": e.operation,
        "apiVersion": e.api_version, "time": e.time, "fieldsType": "FieldsV1",
        "fieldsV1": e.set.to_fields_v1()});
    if !e.subresource.is_empty() {
        v["subresource"] = json!(e.subresource);
    }
    v
}

fn path(els: &[&str]) -> Path {
    els.iter().map(|e| format!("f:{e}")).collect()
}

/// The server's own metadata: never owned by a manager.
const IGNORED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
    &["metadata", "deletionTimestamp"],
    &["metadata", "deletionGracePeriodSeconds"],
];

/// Keep only the fields a write through this endpoint may own: never the server's
/// metadata; on the main resource not status (when it has a status subresource), through
/// status only status.
fn scope(info: &ResourceInfo, sub: &str, set: Set) -> Set {
    static IGNORED_PATHS: std::sync::LazyLock<Vec<Path>> =
        std::sync::LazyLock::new(|| IGNORED.iter().map(|p| path(p)).collect());
    let mut set = set.without_prefixes(&IGNORED_PATHS);
    set.0.remove(&path(&["metadata"]));
    match sub {
        "" if crate::strategy::has_status(info) => set.without_prefixes(&[path(&["status"])]),
        "" => set,
        "scale" => set.with_prefixes(&[path(&["spec", "replicas"])]),
        "ephemeralcontainers" => set.with_prefixes(&[path(&["spec", "ephemeralContainers"])]),
        other => set.with_prefixes(&[path(&[other])]),
    }
}

fn without_managed(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

fn now() -> Value {
    json!(crate::meta::now_rfc3339())
}

/// Take the fields `changed` from every manager but `me`; the ones that had them, with
/// the fields, are returned (the conflicts of an apply). Managers left with no fields are
/// then dropped by the caller (see `kept`).
fn take_from_others<'e>(
    entries: impl Iterator<Item = &'e mut Entry>,
    me: &Entry,
    changed: &Set,
    removed: &Set,
) -> Vec<(Entry, Set)> {
    let mut conflicts = Vec::new();
    for e in entries.filter(|e| !e.same_owner(me)) {
        let lost = e.set.intersection(changed);
        if !lost.is_empty() {
            conflicts.push((e.clone(), lost.clone()));
            e.set.remove_all(&lost);
        }
        e.set.remove_all(removed);
    }
    conflicts
}

/// Whether a manager's entry stays: it has fields, or it is `me`'s.
fn kept(e: &Entry, me: &Entry) -> bool {
    !e.set.is_empty() || e.same_owner(me)
}

/// The managers an update starts from.
enum Baseline<'a> {
    /// The request's `[{}]`: none.
    Cleared,
    /// The request set its own list (each entry checked).
    Requested(&'a [Value]),
    /// The stored ones (an empty requested list keeps them).
    Stored(&'a [Value]),
}

fn baseline<'a>(old: &'a Value, requested: Option<&'a Value>) -> Baseline<'a> {
    match requested.and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            if list
                .iter()
                .all(|e| e.as_object().is_some_and(|m| m.is_empty()))
            {
                Baseline::Cleared
            } else {
                Baseline::Requested(list)
            }
        }
        _ => Baseline::Stored(
            old.pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .map_or(&[], Vec::as_slice),
        ),
    }
}

/// A stored managedFields entry, opened (its fields parsed) only when the write concerns
/// it: most writes change the fields of one manager, and the others are kept as stored.
enum Slot {
    Kept(Value),
    Open(Entry),
}

impl Slot {
    fn open(&self) -> Option<&Entry> {
        match self {
            Slot::Open(e) => Some(e),
            Slot::Kept(_) => None,
        }
    }

    fn open_mut(&mut self) -> Option<&mut Entry> {
        match self {
            Slot::Open(e) => Some(e),
            Slot::Kept(_) => None,
        }
    }

    /// A stored entry, opened when it is `me`'s, has no fields, or owns a path of
    /// `touched` (so it may lose fields).
    fn of(stored: &Value, me: &Entry, touched: [&Set; 2]) -> Result<Slot> {
        let fields = stored.get("fieldsV1").filter(|f| {
            f.as_object().is_some_and(|m| !m.is_empty())
                && !touched
                    .iter()
                    .any(|t| t.0.iter().any(|p| fieldset::member(f, p)))
        });
        if fields.is_some() && !head(stored).same_owner(me) {
            return Ok(Slot::Kept(stored.clone()));
        }
        decode_entry(stored).map(Slot::Open)
    }
}

/// Record a create or update by `manager` (an `Update` operation) through subresource
/// `sub` ("" for the object itself): it owns what it changed and takes those fields from
/// everyone else. `requested` is the managedFields the request carried.
pub fn record_update(
    info: &ResourceInfo,
    schema: Option<&Value>,
    sub: &str,
    old: &Value,
    new: &mut Value,
    requested: Option<&Value>,
    manager: &str,
) -> Result<()> {
    let base = baseline(old, requested);
    if let Baseline::Cleared = base {
        store(new, Vec::new());
        return Ok(());
    }
    // compare() passes over metadata.managedFields.
    let c = typed::compare(old, new, schema);
    let mut changed = scope(info, sub, c.added);
    changed.absorb(scope(info, sub, c.modified));
    let removed = scope(info, sub, c.removed);
    let mut me = Entry {
        manager: manager.to_string(),
        operation: "Update".into(),
        api_version: info.api_version(),
        time: now(),
        subresource: sub.to_string(),
        set: Set::default(),
    };
    let mut slots: Vec<Slot> = match base {
        Baseline::Requested(list) => list
            .iter()
            .map(|e| decode_entry(e).map(Slot::Open))
            .collect::<Result<_>>()?,
        Baseline::Stored(list) => list
            .iter()
            .map(|e| Slot::of(e, &me, [&changed, &removed]))
            .collect::<Result<_>>()?,
        Baseline::Cleared => Vec::new(),
    };
    take_from_others(
        slots.iter_mut().filter_map(Slot::open_mut),
        &me,
        &changed,
        &removed,
    );
    slots.retain(|s| s.open().is_none_or(|e| kept(e, &me)));
    let mine = slots
        .iter()
        .position(|s| s.open().is_some_and(|e| e.same_owner(&me)));
    let mut set = mine
        .and_then(|i| slots[i].open())
        .map(|e| e.set.clone())
        .unwrap_or_default();
    set.remove_all(&removed);
    set.absorb(changed);
    me.set = set;
    match mine {
        Some(i) if me.set.is_empty() => {
            slots.remove(i);
        }
        // The time changes only with the fields.
        Some(i) if slots[i].open().is_some_and(|e| e.set != me.set) => slots[i] = Slot::Open(me),
        Some(_) => {}
        None if !me.set.is_empty() => slots.push(Slot::Open(me)),
        None => {}
    }
    let list = slots.into_iter().map(|s| match s {
        Slot::Kept(v) => v,
        Slot::Open(e) => encode_entry(&e),
    });
    store(new, list.collect());
    Ok(())
}

/// Set `obj`'s managedFields to `entries` (encoded), or remove them when there are none.
fn store(obj: &mut Value, entries: Vec<Value>) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// Why an apply failed: fields other managers own, or anything else.
enum Failure {
    Conflicts(Vec<(Entry, Set)>),
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Conflicts(c) => conflict_error(&c),
            Failure::Api(e) => e,
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Server-side apply of `config` by `manager` onto `live` (None: the object is new).
/// Returns the object to write, managedFields included.
///
/// As kube-apiserver does, `kubectl apply --server-side` (manager `kubectl`) on an object
/// last applied client-side may take over, without conflicts, the fields its
/// last-applied-configuration annotation set to the values they still have.
pub fn apply(a: &Applying<'_>, live: Option<&Value>) -> Result<Value> {
    let (info, manager) = (a.info, a.manager);
    let conflicts = match try_apply(a, live, a.force) {
        Err(Failure::Conflicts(c)) if manager == "kubectl" => c,
        other => return other.map_err(ApiError::from),
    };
    let allowed = live.and_then(|l| allowed_by_last_applied(info, a.schema, l));
    let unexplained: Vec<(Entry, Set)> = conflicts
        .into_iter()
        .map(|(e, fields)| {
            let rest = match &allowed {
                Some(a) => fields.difference(a),
                None => fields,
            };
            (e, rest)
        })
        .filter(|(_, rest)| !rest.is_empty())
        .collect();
    if !unexplained.is_empty() {
        return Err(conflict_error(&unexplained));
    }
    try_apply(a, live, true).map_err(ApiError::from)
}

/// The fields the last-applied-configuration annotation sets to what the object still has.
fn allowed_by_last_applied(
    info: &ResourceInfo,
    schema: Option<&Value>,
    live: &Value,
) -> Option<Set> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(info.api_version().as_str()) {
        return None;
    }
    let c = typed::compare(&last, &without_managed(live), schema);
    Some(
        typed::field_set(&last, schema)
            .difference(&c.modified)
            .difference(&c.added)
            .difference(&c.removed),
    )
}

/// A server-side apply: of `config`, by `manager`, to the object or (`status`) its status.
pub struct Applying<'a> {
    pub info: &'a ResourceInfo,
    pub schema: Option<&'a Value>,
    pub status: bool,
    pub config: &'a Value,
    pub manager: &'a str,
    pub force: bool,
}

fn try_apply(
    a: &Applying<'_>,
    live: Option<&Value>,
    force: bool,
) -> std::result::Result<Value, Failure> {
    let Applying {
        info,
        schema,
        status,
        config,
        manager,
        ..
    } = *a;
    let sub = if status { "status" } else { "" };
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut entries = decode(live_obj.pointer("/metadata/managedFields"))?;
    let live_plain = without_managed(live_obj);
    let mut config_plain = without_managed(config);
    if !status
        && crate::strategy::has_status(info)
        && let Some(m) = config_plain.as_object_mut()
    {
        m.remove("status");
    }
    let mut merged = typed::merge(&live_plain, &config_plain, schema);
    let me = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: info.api_version(),
        time: now(),
        subresource: sub.to_string(),
        set: scope(info, sub, typed::field_set(&config_plain, schema)),
    };
    // What the manager applied before and no longer does goes, unless someone else owns it.
    if let Some(last) = entries.iter().find(|e| e.same_owner(&me)) {
        let others = entries
            .iter()
            .filter(|e| !e.same_owner(&me))
            .fold(Set::default(), |acc, e| acc.union(&e.set));
        let kept = me.set.union(&others);
        let dropped = last.set.difference(&kept);
        typed::remove(&mut merged, &dropped, &kept);
    }
    let c = typed::compare(&live_plain, &merged, schema);
    let mut changed = scope(info, sub, c.added);
    changed.absorb(scope(info, sub, c.modified));
    let removed = scope(info, sub, c.removed);
    let conflicts = take_from_others(entries.iter_mut(), &me, &changed, &removed);
    entries.retain(|e| kept(e, &me));
    if !conflicts.is_empty() && !force {
        return Err(Failure::Conflicts(conflicts));
    }
    match entries.iter().position(|e| e.same_owner(&me)) {
        Some(i) => entries[i] = me,
        None => entries.push(me),
    }
    entries.retain(|e| !e.set.is_empty());
    store(&mut merged, entries.iter().map(encode_entry).collect());
    Ok(merged)
}

fn conflict_error(conflicts: &[(Entry, Set)]) -> ApiError {
    let mut causes = Vec::new();
    let mut parts = Vec::new();
    for (owner, fields) in conflicts {
        let who = if owner.operation == "Apply" {
            format!("conflict with \"{}\"", owner.manager)
        } else {
            format!(
                "conflict with \"{}\" using {}",
                owner.manager, owner.api_version
            )
        };
        for f in &fields.0 {
            causes.push(Cause {
                field: display(f),
                message: who.clone(),
                reason: "FieldManagerConflict".into(),
            });
            parts.push(format!("{who}: {}", display(f)));
        }
    }
    let n = causes.len();
    let plural = if n == 1 { "conflict" } else { "conflicts" };
    ApiError::ApplyConflict {
        message: format!("Apply failed with {n} {plural}: {}", parts.join("\n")),
        causes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceInfo {
        minik_api::builtin("apps", "v1", "deployments")
    }

    /// `obj` written by each of `writes` (manager, new labels and replicas) in turn.
    fn written(writes: &[(&str, Value, i64)]) -> Value {
        let info = deployments();
        let schema = minik_api::schema::of(info);
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n"}, "spec": {"replicas": 1}});
        for (manager, labels, replicas) in writes {
            let mut new = obj.clone();
            new["metadata"]["labels"] = labels.clone();
            new["spec"]["replicas"] = json!(replicas);
            record_update(info, schema, "", &obj, &mut new, None, manager).expect("update");
            obj = new;
        }
        obj
    }

    fn managers(obj: &Value) -> Vec<(String, Set)> {
        decode(obj.pointer("/metadata/managedFields"))
            .expect("managedFields")
            .into_iter()
            .map(|e| (e.manager, e.set))
            .collect()
    }

    #[test]
    fn an_update_takes_fields_from_the_managers_it_concerns_and_keeps_the_others_verbatim() {
        let obj = written(&[
            ("a", json!({"a": "1"}), 1),
            ("b", json!({"a": "1", "b": "1"}), 2),
            ("c", json!({"a": "1", "b": "1", "c": "1"}), 2),
        ]);
        let stored = obj
            .pointer("/metadata/managedFields")
            .expect("fields")
            .clone();
        // "d" changes label a (a's) and replicas (b's); c's label is left alone.
        let info = deployments();
        let schema = minik_api::schema::of(info);
        let mut new = obj.clone();
        new["metadata"]["labels"]["a"] = json!("2");
        new["spec"]["replicas"] = json!(3);
        let mut eager = new.clone();
        record_update(info, schema, "", &obj, &mut new, None, "d").expect("update");
        record_update(info, schema, "", &obj, &mut eager, Some(&stored), "d").expect("update");
        // The stored entries opened only where needed give what opening all of them gives.
        assert_eq!(managers(&new), managers(&eager));
        let names: Vec<String> = managers(&new).into_iter().map(|(m, _)| m).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let label = |k: &str| {
            vec![
                String::from("f:metadata"),
                "f:labels".into(),
                format!("f:{k}"),
            ]
        };
        let sets: std::collections::HashMap<String, Set> = managers(&new).into_iter().collect();
        assert!(sets["d"].0.contains(&label("a")));
        assert!(!sets["a"].0.contains(&label("a")));
        assert!(sets["d"].0.contains(&path(&["spec", "replicas"])));
        assert!(!sets["b"].0.contains(&path(&["spec", "replicas"])));
        assert!(sets["b"].0.contains(&label("b")));
        // c's entry is the stored one, time and all.
        let entry = |o: &Value, m: &str| {
            o.pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .and_then(|l| l.iter().find(|e| e["manager"] == m).cloned())
        };
        assert_eq!(entry(&new, "c"), entry(&obj, "c"));
    }

    #[test]
    fn membership_is_read_from_fields_v1_as_the_set_reads_it() {
        let obj = written(&[("a", json!({"x": "1"}), 5)]);
        let f = obj
            .pointer("/metadata/managedFields/0/fieldsV1")
            .expect("fieldsV1");
        let set = Set::from_fields_v1(f).expect("set");
        for p in &set.0 {
            assert!(fieldset::member(f, p), "{p:?}");
        }
        assert!(!fieldset::member(f, &path(&["spec"])));
        assert!(!fieldset::member(f, &path(&["spec", "paused"])));
        assert!(!fieldset::member(f, &path(&["metadata", "labels", "y"])));
    }
}
