//! JSON names of protobuf fields. prost names fields in snake_case; the JSON name is the one
//! the OpenAPI schema of the same type uses (matched ignoring case and underscores), so
//! `pod_ip` becomes `podIP` and `cluster_i_ps` becomes `clusterIPs`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use super::Field;

/// OpenAPI property names per proto message name.
static PROPERTIES: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    for r in crate::all() {
        (r.schema)(&mut generator);
    }
    generator
        .take_definitions(false)
        .into_iter()
        .filter_map(|(name, schema)| {
            let proto = super::message_of_definition(&name)?;
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            Some((proto, props))
        })
        .collect()
});

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a field goes in JSON.
pub enum JsonName {
    Key(String),
    /// A Go struct embedded with `json:",inline"`: its fields go into the parent object.
    Inline,
}

/// The JSON name of `field` of message `message`.
pub fn json_name(message: &str, field: &Field) -> JsonName {
    let wanted = squash(field.name);
    match PROPERTIES.get(message) {
        Some(props) => match props.iter().find(|p| squash(p) == wanted) {
            Some(p) => JsonName::Key(p.clone()),
            // A message field the schema does not list is an inlined struct.
            None if matches!(field.kind, super::Kind::Message(_)) => JsonName::Inline,
            None => JsonName::Key(lower_camel(field.name)),
        },
        None => JsonName::Key(lower_camel(field.name)),
    }
}
