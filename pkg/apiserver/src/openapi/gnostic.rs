//! A Swagger 2.0 JSON document in gnostic's protobuf form (package `openapi.v2`, the
//! message `Document`), which client-go decodes. Only what the JSON document can hold is
//! written; field numbers are gnostic's.

use serde_json::Value;

/// A protobuf message being written.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, tag: u32, wire: u64) {
        self.varint(((tag as u64) << 3) | wire);
    }
    fn bytes(&mut self, tag: u32, b: &[u8]) {
        self.key(tag, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn message(&mut self, tag: u32, m: Pb) {
        self.bytes(tag, &m.0);
    }
    fn string(&mut self, tag: u32, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            self.bytes(tag, s.as_bytes());
        }
    }
    fn strings(&mut self, tag: u32, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            self.string(tag, Some(s));
        }
    }
    fn boolean(&mut self, tag: u32, v: Option<&Value>) {
        if v.and_then(Value::as_bool) == Some(true) {
            self.key(tag, 0);
            self.varint(1);
        }
    }
    fn int(&mut self, tag: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_i64) {
            self.key(tag, 0);
            self.varint(n as u64);
        }
    }
    fn double(&mut self, tag: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_f64) {
            self.key(tag, 1);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }
    /// `Any`: a value as YAML text (JSON is YAML).
    fn any(&mut self, tag: u32, v: &Value) {
        let mut any = Pb::default();
        any.bytes(2, v.to_string().as_bytes());
        self.message(tag, any);
    }
    /// `repeated NamedX` entries of a JSON object, each value written by `f`.
    fn named(&mut self, tag: u32, v: Option<&Value>, f: impl Fn(&Value) -> Pb) {
        for (name, value) in v.and_then(Value::as_object).into_iter().flatten() {
            let mut entry = Pb::default();
            entry.bytes(1, name.as_bytes());
            entry.message(2, f(value));
            self.message(tag, entry);
        }
    }
    /// `repeated NamedAny vendor_extension`: the `x-` keys of an object.
    fn extensions(&mut self, tag: u32, v: &Value) {
        for (name, value) in v.as_object().into_iter().flatten() {
            if name.starts_with("x-") {
                let mut entry = Pb::default();
                entry.bytes(1, name.as_bytes());
                entry.any(2, value);
                self.message(tag, entry);
            }
        }
    }
}

/// Wrap `inner` as field `tag` of a new message (gnostic's one-field wrappers and oneofs).
fn wrap(tag: u32, inner: Pb) -> Pb {
    let mut m = Pb::default();
    m.message(tag, inner);
    m
}

pub fn document(doc: &Value) -> Vec<u8> {
    let mut d = Pb::default();
    d.string(1, doc.get("swagger"));
    let mut info = Pb::default();
    info.string(1, doc.pointer("/info/title"));
    info.string(2, doc.pointer("/info/version"));
    d.message(2, info);
    let mut paths = Pb::default();
    paths.named(2, doc.get("paths"), path_item);
    d.message(8, paths);
    let mut definitions = Pb::default();
    definitions.named(1, doc.get("definitions"), schema);
    d.message(9, definitions);
    d.extensions(16, doc);
    d.0
}

fn path_item(item: &Value) -> Pb {
    let mut p = Pb::default();
    for (tag, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(verb) {
            p.message(tag, operation(op));
        }
    }
    for param in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        p.message(9, parameter(param));
    }
    p.extensions(10, item);
    p
}

fn operation(op: &Value) -> Pb {
    let mut o = Pb::default();
    o.strings(1, op.get("tags"));
    o.string(2, op.get("summary"));
    o.string(3, op.get("description"));
    o.string(5, op.get("operationId"));
    o.strings(6, op.get("produces"));
    o.strings(7, op.get("consumes"));
    for param in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        o.message(8, parameter(param));
    }
    let mut responses = Pb::default();
    responses.named(1, op.get("responses"), |r| {
        let mut resp = Pb::default();
        resp.string(1, r.get("description"));
        if let Some(s) = r.get("schema") {
            resp.message(2, wrap(1, schema(s)));
        }
        wrap(1, resp)
    });
    o.message(9, responses);
    o.strings(10, op.get("schemes"));
    o.boolean(11, op.get("deprecated"));
    o.extensions(13, op);
    o
}

/// A `ParametersItem`: a body parameter, a query or path parameter, or a reference.
fn parameter(p: &Value) -> Pb {
    if let Some(r) = p.get("$ref") {
        let mut reference = Pb::default();
        reference.string(1, Some(r));
        return wrap(2, reference);
    }
    let mut sub = Pb::default();
    let inner = match p.get("in").and_then(Value::as_str) {
        Some("body") => {
            sub.string(1, p.get("description"));
            sub.string(2, p.get("name"));
            sub.string(3, p.get("in"));
            sub.boolean(4, p.get("required"));
            if let Some(s) = p.get("schema") {
                sub.message(5, schema(s));
            }
            return wrap(1, wrap(1, sub));
        }
        Some("path") => {
            sub.boolean(1, p.get("required"));
            sub.string(2, p.get("in"));
            sub.string(3, p.get("description"));
            sub.string(4, p.get("name"));
            sub.string(5, p.get("type"));
            sub.boolean(19, p.get("uniqueItems"));
            4
        }
        _ => {
            sub.boolean(1, p.get("required"));
            sub.string(2, p.get("in"));
            sub.string(3, p.get("description"));
            sub.string(4, p.get("name"));
            sub.string(6, p.get("type"));
            sub.boolean(20, p.get("uniqueItems"));
            3
        }
    };
    wrap(1, wrap(2, wrap(inner, sub)))
}

fn schema(s: &Value) -> Pb {
    let mut m = Pb::default();
    m.string(1, s.get("$ref"));
    m.string(2, s.get("format"));
    m.string(3, s.get("title"));
    m.string(4, s.get("description"));
    if let Some(d) = s.get("default") {
        m.any(5, d);
    }
    m.double(6, s.get("multipleOf"));
    m.double(7, s.get("maximum"));
    m.boolean(8, s.get("exclusiveMaximum"));
    m.double(9, s.get("minimum"));
    m.boolean(10, s.get("exclusiveMinimum"));
    m.int(11, s.get("maxLength"));
    m.int(12, s.get("minLength"));
    m.string(13, s.get("pattern"));
    m.int(14, s.get("maxItems"));
    m.int(15, s.get("minItems"));
    m.boolean(16, s.get("uniqueItems"));
    m.int(17, s.get("maxProperties"));
    m.int(18, s.get("minProperties"));
    m.strings(19, s.get("required"));
    for e in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.any(20, e);
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Pb::default();
            item.key(2, 0);
            item.varint(*b as u64);
            m.message(21, item);
        }
        Some(a @ Value::Object(_)) => m.message(21, wrap(1, schema(a))),
        _ => {}
    }
    match s.get("type") {
        Some(t @ Value::String(_)) => {
            let mut ty = Pb::default();
            ty.string(1, Some(t));
            m.message(22, ty);
        }
        Some(t @ Value::Array(_)) => {
            let mut ty = Pb::default();
            ty.strings(1, Some(t));
            m.message(22, ty);
        }
        _ => {}
    }
    match s.get("items") {
        Some(Value::Array(items)) => {
            let mut list = Pb::default();
            for i in items {
                list.message(1, schema(i));
            }
            m.message(23, list);
        }
        Some(i @ Value::Object(_)) => m.message(23, wrap(1, schema(i))),
        _ => {}
    }
    for a in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(a));
    }
    if s.get("properties").is_some() {
        let mut props = Pb::default();
        props.named(1, s.get("properties"), schema);
        m.message(25, props);
    }
    m.boolean(27, s.get("readOnly"));
    if let Some(e) = s.get("example") {
        m.any(30, e);
    }
    m.extensions(31, s);
    m
}
