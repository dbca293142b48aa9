//! JSON objects encoded as Kubernetes protobuf (`k8s\0` + runtime.Unknown), with the same
//! generated schema the decoder uses; for clients that accept only protobuf.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::decode::{BY_NAME, ProtoError, message_name};
use super::names::{JsonName, json_name};
use super::{Field, Kind};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn key(out: &mut Vec<u8>, tag: u32, wire: u64) {
    varint(out, (u64::from(tag) << 3) | wire);
}

fn bytes_field(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    key(out, tag, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn int_field(out: &mut Vec<u8>, tag: u32, v: i64) {
    key(out, tag, 0);
    varint(out, v as u64);
}

fn bad(what: &str) -> ProtoError {
    ProtoError(format!("cannot encode {what}"))
}

/// Encode the well-known messages whose JSON form is not an object.
fn special(name: &str, v: &Value) -> Result<Option<Vec<u8>>, ProtoError> {
    let mut out = Vec::new();
    match name {
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let t = v
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .ok_or_else(|| bad("time"))?;
            int_field(&mut out, 1, t.timestamp());
            int_field(&mut out, 2, i64::from(t.timestamp_subsec_nanos()));
        }
        "apimachinery.pkg.api.resource.Quantity" => {
            let q = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(bad("quantity")),
            };
            bytes_field(&mut out, 1, q.as_bytes());
        }
        "apimachinery.pkg.util.intstr.IntOrString" => match v {
            Value::Number(n) => {
                int_field(&mut out, 1, 0);
                int_field(&mut out, 2, n.as_i64().ok_or_else(|| bad("int-or-string"))?);
            }
            Value::String(s) => {
                int_field(&mut out, 1, 1);
                bytes_field(&mut out, 3, s.as_bytes());
            }
            _ => return Err(bad("int-or-string")),
        },
        "apimachinery.pkg.runtime.RawExtension"
        | "apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON" => {
            let raw = serde_json::to_vec(v).map_err(|e| ProtoError(e.to_string()))?;
            bytes_field(&mut out, 1, &raw);
        }
        _ => return Ok(None),
    }
    Ok(Some(out))
}

fn value(out: &mut Vec<u8>, field: &Field, kind: Kind, v: &Value) -> Result<(), ProtoError> {
    match (kind, v) {
        (_, Value::Null) => {}
        (Kind::String, Value::String(s)) => bytes_field(out, field.tag, s.as_bytes()),
        (Kind::Bytes, Value::String(s)) => {
            let b = STANDARD.decode(s).map_err(|_| bad(field.name))?;
            bytes_field(out, field.tag, &b);
        }
        (Kind::Bool, Value::Bool(b)) => int_field(out, field.tag, i64::from(*b)),
        (Kind::Int, Value::Number(n)) => {
            int_field(out, field.tag, n.as_i64().ok_or_else(|| bad(field.name))?)
        }
        (Kind::Double, Value::Number(n)) => {
            key(out, field.tag, 1);
            out.extend_from_slice(&n.as_f64().unwrap_or_default().to_bits().to_le_bytes());
        }
        (Kind::Message(m), v) => bytes_field(out, field.tag, &message(m, v)?),
        _ => return Err(bad(field.name)),
    }
    Ok(())
}

/// Encode `v` as message `name`.
pub(crate) fn message(name: &str, v: &Value) -> Result<Vec<u8>, ProtoError> {
    if let Some(b) = special(name, v)? {
        return Ok(b);
    }
    let msg = BY_NAME
        .get(name)
        .ok_or_else(|| ProtoError(format!("unknown message type {name}")))?;
    let obj = v.as_object().ok_or_else(|| bad(name))?;
    let mut out = Vec::new();
    for field in msg.fields {
        let jv = match json_name(msg.name, field) {
            JsonName::Key(k) => match obj.get(&k) {
                Some(jv) => jv,
                None => continue,
            },
            // An inlined struct reads its fields from this same object.
            JsonName::Inline => {
                if let Kind::Message(m) = field.kind {
                    bytes_field(&mut out, field.tag, &message(m, v)?);
                }
                continue;
            }
        };
        match field.kind {
            Kind::MapString | Kind::MapBytes | Kind::MapMessage(_) => {
                for (k, mv) in jv.as_object().into_iter().flatten() {
                    let mut entry = Vec::new();
                    bytes_field(&mut entry, 1, k.as_bytes());
                    let vk = match field.kind {
                        Kind::MapString => Kind::String,
                        Kind::MapBytes => Kind::Bytes,
                        Kind::MapMessage(m) => Kind::Message(m),
                        _ => unreachable!("matched map kinds"),
                    };
                    let vf = Field {
                        tag: 2,
                        kind: vk,
                        repeated: false,
                        ..*field
                    };
                    value(&mut entry, &vf, vk, mv)?;
                    bytes_field(&mut out, field.tag, &entry);
                }
            }
            _ if field.repeated => {
                for item in jv.as_array().into_iter().flatten() {
                    value(&mut out, field, field.kind, item)?;
                }
            }
            _ => value(&mut out, field, field.kind, jv)?,
        }
    }
    Ok(out)
}

/// Encode a JSON object (with apiVersion and kind) as a `k8s\0`-framed runtime.Unknown.
pub fn encode_envelope(obj: &Value) -> Result<Vec<u8>, ProtoError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = message_name(api_version, kind)
        .ok_or_else(|| ProtoError(format!("no protobuf type for {api_version} {kind}")))?;
    let raw = message(name, obj)?;
    let mut type_meta = Vec::new();
    bytes_field(&mut type_meta, 1, api_version.as_bytes());
    bytes_field(&mut type_meta, 2, kind.as_bytes());
    let mut unknown = Vec::new();
    bytes_field(&mut unknown, 1, &type_meta);
    bytes_field(&mut unknown, 2, &raw);
    bytes_field(&mut unknown, 3, b"");
    bytes_field(&mut unknown, 4, b"");
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown);
    Ok(out)
}

/// One event of a protobuf watch stream: a length-prefixed (4 bytes, big-endian)
/// `meta.v1.WatchEvent` whose object is the object's own envelope, as client-go reads it.
pub fn encode_watch_event(event: &Value) -> Result<Vec<u8>, ProtoError> {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    let object = encode_envelope(event.get("object").unwrap_or(&Value::Null))?;
    let mut raw = Vec::new();
    bytes_field(&mut raw, 1, &object);
    let mut watch_event = Vec::new();
    bytes_field(&mut watch_event, 1, kind.as_bytes());
    bytes_field(&mut watch_event, 2, &raw);
    let len =
        u32::try_from(watch_event.len()).map_err(|_| ProtoError("watch event too large".into()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend(watch_event);
    Ok(out)
}
