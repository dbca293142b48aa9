//! A custom resource against its CRD's structural schema: unknown fields pruned, defaults
//! filled in, then every constraint checked (types, nullable, required, enum, pattern,
//! bounds, formats, int-or-string, embedded resources, list types), each failure a field
//! cause worded as kube-apiserver words it.

use serde_json::{Map, Value, json};

use crate::error::Cause;

/// Prune, default and validate `obj` (a whole custom resource) against `schema`.
pub(crate) fn admit(schema: &Value, obj: &mut Value) -> Vec<Cause> {
    if let Value::Object(m) = obj {
        // apiVersion, kind and metadata are the API's, whatever the schema says.
        let meta = ["apiVersion", "kind", "metadata"];
        let kept: Vec<(String, Value)> = meta
            .iter()
            .filter_map(|k| m.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        let mut rest = Value::Object(std::mem::take(m));
        prune(&mut rest, schema);
        default(&mut rest, schema);
        if let Value::Object(r) = rest {
            *m = r;
        }
        for (k, v) in kept {
            m.insert(k, v);
        }
    }
    let mut causes = Vec::new();
    let mut body = obj.clone();
    if let Value::Object(m) = &mut body {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("metadata");
    }
    check(&body, schema, "", &mut causes);
    causes
}

fn preserves(s: &Value) -> bool {
    s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
}

/// Drop fields the schema does not define.
pub(crate) fn prune(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            if s.get("x-kubernetes-embedded-resource") == Some(&json!(true)) {
                // apiVersion, kind and metadata of an embedded object are its own.
            }
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            let embedded = s.get("x-kubernetes-embedded-resource") == Some(&json!(true));
            m.retain(|k, _| {
                preserves(s)
                    || props.is_some_and(|p| p.contains_key(k))
                    || additional.is_some_and(|a| a != &json!(false))
                    || embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
            });
            for (k, child) in m.iter_mut() {
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(cs), _) => prune(child, cs),
                    (None, Some(a)) if a.is_object() => prune(child, a),
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for i in items {
                    prune(i, is);
                }
            }
        }
        _ => {}
    }
}

/// Fill in `default`s of absent properties of present objects.
pub(crate) fn default(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !m.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = m.get_mut(k) {
                        default(child, ps);
                    }
                }
            }
            if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for child in m.values_mut() {
                    default(child, a);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for i in items {
                    default(i, is);
                }
            }
        }
        _ => {}
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How kube-apiserver shows a bad value in a message.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn invalid(out: &mut Vec<Cause>, path: &str, v: &Value, message: String) {
    out.push(Cause {
        field: path.to_string(),
        message: format!("Invalid value: {}: {message}", shown(v)),
        reason: "FieldValueInvalid".into(),
    });
}

fn type_ok(want: &str, v: &Value) -> bool {
    match (want, v) {
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("number", Value::Number(_)) => true,
        (w, v) => w == type_name(v),
    }
}

/// Validate `v` at `path` against `s`.
pub(crate) fn check(v: &Value, s: &Value, path: &str, out: &mut Vec<Cause>) {
    let here = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if s.get("nullable") != Some(&json!(true)) && s.get("type").is_some() {
            invalid(
                out,
                path,
                v,
                format!(
                    "{here} in body must be of type {}: \"null\"",
                    s["type"].as_str().unwrap_or("object")
                ),
            );
        }
        return;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if int_or_string {
        if !matches!(v, Value::String(_)) && !type_ok("integer", v) {
            invalid(
                out,
                path,
                v,
                format!("{here} in body must be of type integer-or-string"),
            );
            return;
        }
    } else if let Some(want) = s.get("type").and_then(Value::as_str)
        && !type_ok(want, v)
    {
        invalid(
            out,
            path,
            v,
            format!(
                "{here} in body must be of type {want}: \"{}\"",
                type_name(v)
            ),
        );
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        out.push(Cause {
            field: path.to_string(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                v,
                list.join(", ")
            ),
            reason: "FieldValueNotSupported".into(),
        });
    }
    match v {
        Value::String(text) => check_string(text, v, s, path, here, out),
        Value::Number(n) => check_number(n.as_f64().unwrap_or(0.0), v, s, path, here, out),
        Value::Array(items) => check_array(items, v, s, path, here, out),
        Value::Object(m) => check_object(m, v, s, path, here, out),
        Value::Bool(_) | Value::Null => {}
    }
}

fn check_string(text: &str, v: &Value, s: &Value, path: &str, here: &str, out: &mut Vec<Cause>) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.push(Cause {
            field: path.to_string(),
            message: format!("Too long: may not be more than {max} bytes"),
            reason: "FieldValueTooLong".into(),
        });
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        invalid(
            out,
            path,
            v,
            format!("{here} in body should be at least {min} chars long"),
        );
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str)
        && let Ok(re) = regex::Regex::new(p)
        && !re.is_match(text)
    {
        invalid(out, path, v, format!("{here} in body should match '{p}'"));
    }
    if let Some(f) = s.get("format").and_then(Value::as_str)
        && !format_ok(f, text)
    {
        invalid(
            out,
            path,
            v,
            format!("{here} in body must be of type {f}: \"{text}\""),
        );
    }
}

/// The formats kube-apiserver checks (the others are accepted as they are).
fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => text.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "uuid" => uuid::Uuid::parse_str(text).is_ok(),
        "byte" => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).is_ok(),
        "int-or-string" => true,
        _ => true,
    }
}

fn check_number(n: f64, v: &Value, s: &Value, path: &str, here: &str, out: &mut Vec<Cause>) {
    let excl = |k: &str| s.get(k) == Some(&json!(true));
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        if excl("exclusiveMaximum") && n >= max {
            invalid(
                out,
                path,
                v,
                format!("{here} in body should be less than {max}"),
            );
        } else if n > max {
            invalid(
                out,
                path,
                v,
                format!("{here} in body should be less than or equal to {max}"),
            );
        }
    }
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        if excl("exclusiveMinimum") && n <= min {
            invalid(
                out,
                path,
                v,
                format!("{here} in body should be greater than {min}"),
            );
        } else if n < min {
            invalid(
                out,
                path,
                v,
                format!("{here} in body should be greater than or equal to {min}"),
            );
        }
    }
    if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
        && m != 0.0
        && (n / m).fract() != 0.0
    {
        invalid(
            out,
            path,
            v,
            format!("{here} in body should be a multiple of {m}"),
        );
    }
}

fn check_array(
    items: &[Value],
    v: &Value,
    s: &Value,
    path: &str,
    here: &str,
    out: &mut Vec<Cause>,
) {
    let n = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        out.push(Cause {
            field: path.to_string(),
            message: format!("Too many: {n}: must have at most {max} items"),
            reason: "FieldValueTooMany".into(),
        });
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        invalid(
            out,
            path,
            v,
            format!("{here} in body should have at least {min} items"),
        );
    }
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    let unique = s.get("uniqueItems") == Some(&json!(true)) || list_type == Some("set");
    let keys: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let duplicate = if list_type == Some("map") && !keys.is_empty() {
            let id = |x: &Value| keys.iter().map(|k| x.get(*k).cloned()).collect::<Vec<_>>();
            items[..i].iter().any(|o| id(o) == id(item))
        } else {
            unique && items[..i].contains(item)
        };
        if duplicate {
            out.push(Cause {
                field: ip.clone(),
                message: format!("Duplicate value: {}", shown(item)),
                reason: "FieldValueDuplicate".into(),
            });
        }
        if let Some(is) = s.get("items") {
            check(item, is, &ip, out);
        }
    }
}

fn check_object(
    m: &Map<String, Value>,
    v: &Value,
    s: &Value,
    path: &str,
    here: &str,
    out: &mut Vec<Cause>,
) {
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = r.as_str()
            && !m.contains_key(k)
        {
            out.push(Cause {
                field: child_path(path, k),
                message: "Required value".into(),
                reason: "FieldValueRequired".into(),
            });
        }
    }
    let n = m.len() as u64;
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        invalid(
            out,
            path,
            v,
            format!("{here} in body should have at most {max} properties"),
        );
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
        && n < min
    {
        invalid(
            out,
            path,
            v,
            format!("{here} in body should have at least {min} properties"),
        );
    }
    if s.get("x-kubernetes-embedded-resource") == Some(&json!(true)) {
        for k in ["apiVersion", "kind"] {
            if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(Cause {
                    field: child_path(path, k),
                    message: "Required value: must not be empty".into(),
                    reason: "FieldValueRequired".into(),
                });
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (k, cv) in m {
        let cs = props.and_then(|p| p.get(k)).or(additional);
        if let Some(cs) = cs {
            check(cv, cs, &child_path(path, k), out);
        }
    }
}
