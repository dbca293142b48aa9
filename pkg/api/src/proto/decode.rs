//! The protobuf wire format, decoded with the generated schema into the JSON Kubernetes
//! clients would have sent: the `k8s\0` envelope around runtime.Unknown, then the object.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::names::{JsonName, json_name};
use super::{Field, Kind, MESSAGES, Message};

/// Why a protobuf body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protobuf: {0}")]
pub struct ProtoError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, ProtoError> {
    Err(ProtoError(m.into()))
}

pub(super) static BY_NAME: LazyLock<HashMap<&'static str, &'static Message>> =
    LazyLock::new(|| MESSAGES.iter().map(|m| (m.name, m)).collect());

/// One field value as it is on the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some((&b, rest)) = self.buf.split_first() else {
                return err("truncated varint");
            };
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint too long")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return err("truncated field");
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| ProtoError("bad tag".into()))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?
                    .try_into()
                    .map_err(|_| ProtoError("bad fixed64".into()))?,
            )),
            2 => {
                let n =
                    usize::try_from(self.varint()?).map_err(|_| ProtoError("bad length".into()))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            w => return err(format!("unsupported wire type {w}")),
        };
        Ok(Some((tag, wire)))
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, ProtoError> {
    let mut r = Reader { buf };
    let mut out = Vec::new();
    while let Some(f) = r.field()? {
        out.push(f);
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<Value, ProtoError> {
    std::str::from_utf8(b)
        .map(|s| json!(s))
        .map_err(|_| ProtoError("string is not UTF-8".into()))
}

/// Well-known Kubernetes messages whose JSON form is not an object of their fields.
fn special(name: &str, buf: &[u8]) -> Result<Option<Value>, ProtoError> {
    let get = |tag: u32| -> Result<Option<Wire<'_>>, ProtoError> {
        Ok(fields(buf)?
            .into_iter()
            .rev()
            .find(|(t, _)| *t == tag)
            .map(|(_, w)| w))
    };
    let int = |tag: u32| -> Result<i64, ProtoError> {
        Ok(match get(tag)? {
            Some(Wire::Varint(v)) => v as i64,
            _ => 0,
        })
    };
    let bytes = |tag: u32| -> Result<&[u8], ProtoError> {
        Ok(match get(tag)? {
            Some(Wire::Bytes(b)) => b,
            _ => &[],
        })
    };
    Ok(Some(match name {
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            // An unset non-pointer time travels as an empty message (or Go's year 1).
            if buf.is_empty() || int(1)? <= -62_135_596_800 {
                return Ok(Some(Value::Null));
            }
            let t = chrono::DateTime::from_timestamp(int(1)?, int(2)? as u32)
                .ok_or_else(|| ProtoError("time out of range".into()))?;
            if name.ends_with("MicroTime") {
                json!(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            } else {
                json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            }
        }
        "apimachinery.pkg.api.resource.Quantity" => text(bytes(1)?)?,
        "apimachinery.pkg.util.intstr.IntOrString" => match int(1)? {
            1 => text(bytes(3)?)?,
            _ => json!(int(2)?),
        },
        "apimachinery.pkg.apis.meta.v1.Duration" => json!(format!("{}s", int(1)? as f64 / 1e9)),
        "apimachinery.pkg.runtime.RawExtension"
        | "apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON" => {
            let raw = bytes(1)?;
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(raw)
                    .map_err(|e| ProtoError(format!("embedded JSON: {e}")))?
            }
        }
        _ => return Ok(None),
    }))
}

fn scalar(kind: Kind, wire: &Wire<'_>) -> Result<Value, ProtoError> {
    Ok(match (kind, wire) {
        (Kind::String, Wire::Bytes(b)) => text(b)?,
        (Kind::Bytes, Wire::Bytes(b)) => json!(STANDARD.encode(b)),
        (Kind::Bool, Wire::Varint(v)) => json!(*v != 0),
        (Kind::Int, Wire::Varint(v)) => json!(*v as i64),
        (Kind::Double, Wire::Fixed64(v)) => json!(f64::from_bits(*v)),
        (Kind::Message(m), Wire::Bytes(b)) => message(m, b)?,
        _ => return err(format!("field kind {kind:?} does not match its wire type")),
    })
}

fn map_entry(kind: Kind, b: &[u8]) -> Result<(String, Value), ProtoError> {
    let mut key = String::new();
    let mut value = Value::Null;
    for (tag, w) in fields(b)? {
        match (tag, &w) {
            (1, Wire::Bytes(k)) => key = text(k)?.as_str().unwrap_or_default().to_string(),
            (2, w) => {
                value = match kind {
                    Kind::MapString => scalar(Kind::String, w)?,
                    Kind::MapBytes => scalar(Kind::Bytes, w)?,
                    Kind::MapMessage(m) => scalar(Kind::Message(m), w)?,
                    _ => return err("not a map"),
                }
            }
            _ => {}
        }
    }
    if value.is_null() {
        value = match kind {
            Kind::MapString | Kind::MapBytes => json!(""),
            _ => json!({}),
        };
    }
    Ok((key, value))
}

/// Decode one message of type `name` into its JSON object.
pub(crate) fn message(name: &str, buf: &[u8]) -> Result<Value, ProtoError> {
    if let Some(v) = special(name, buf)? {
        return Ok(v);
    }
    let Some(msg) = BY_NAME.get(name) else {
        return err(format!("unknown message type {name}"));
    };
    let mut out = Map::new();
    for (tag, wire) in fields(buf)? {
        let Some(field) = msg.fields.iter().find(|f| f.tag == tag) else {
            continue;
        };
        let key = match json_name(msg.name, field) {
            JsonName::Key(k) => k,
            JsonName::Inline => {
                if let Value::Object(inner) = scalar(field.kind, &wire)? {
                    out.extend(inner);
                }
                continue;
            }
        };
        match field.kind {
            Kind::MapString | Kind::MapBytes | Kind::MapMessage(_) => {
                let Wire::Bytes(b) = wire else {
                    return err("map entry is not length-delimited");
                };
                let (k, v) = map_entry(field.kind, b)?;
                let entry = out.entry(key).or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
            }
            _ if field.repeated => push_repeated(&mut out, key, field, &wire)?,
            _ => {
                // Go writes every non-pointer field, so an empty string on the wire is a
                // field JSON would have left out (omitempty); zero times likewise.
                match scalar(field.kind, &wire)? {
                    Value::Null => {}
                    Value::String(s) if s.is_empty() => {}
                    v => {
                        out.insert(key, v);
                    }
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn push_repeated(
    out: &mut Map<String, Value>,
    key: String,
    field: &Field,
    wire: &Wire<'_>,
) -> Result<(), ProtoError> {
    let list = out.entry(key).or_insert_with(|| json!([]));
    let Some(items) = list.as_array_mut() else {
        return err("repeated field clash");
    };
    match (field.kind, wire) {
        // Packed numbers: one length-delimited run of varints.
        (Kind::Int | Kind::Bool, Wire::Bytes(b)) => {
            let mut r = Reader { buf: b };
            while !r.buf.is_empty() {
                items.push(scalar(field.kind, &Wire::Varint(r.varint()?))?);
            }
        }
        _ => items.push(scalar(field.kind, wire)?),
    }
    Ok(())
}

/// The proto message name of a Kubernetes kind (`apps/v1` `Deployment` ->
/// `api.apps.v1.Deployment`).
pub(super) fn message_name(api_version: &str, kind: &str) -> Option<&'static str> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let wanted = |m: &&&Message| {
        m.name.ends_with(&format!(".{version}.{kind}"))
            && match group {
                "" => m.name.starts_with("api.core."),
                "apiextensions.k8s.io" => m.name.starts_with("apiextensions_apiserver."),
                "apiregistration.k8s.io" => m.name.starts_with("kube_aggregator."),
                g => m
                    .name
                    .starts_with(&format!("api.{}.", g.split('.').next().unwrap_or(g))),
            }
    };
    BY_NAME.values().find(wanted).map(|m| m.name)
}

/// Decode a `k8s\0`-framed runtime.Unknown body into the JSON object it carries, with its
/// apiVersion and kind.
pub fn decode_envelope(body: &[u8]) -> Result<Value, ProtoError> {
    let Some(unknown) = body.strip_prefix(b"k8s\0") else {
        return err("the body does not start with the k8s\\0 magic number");
    };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (tag, w) in fields(unknown)? {
        match (tag, w) {
            (1, Wire::Bytes(tm)) => {
                for (t, w) in fields(tm)? {
                    if let (1 | 2, Wire::Bytes(b)) = (t, w) {
                        let s = text(b)?.as_str().unwrap_or_default().to_string();
                        if t == 1 { api_version = s } else { kind = s }
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            (4, Wire::Bytes(b)) if !b.is_empty() && b != b"application/vnd.kubernetes.protobuf" => {
                return err("only raw protobuf content is supported inside runtime.Unknown");
            }
            _ => {}
        }
    }
    let name = message_name(&api_version, &kind)
        .ok_or_else(|| ProtoError(format!("no protobuf type for {api_version} {kind}")))?;
    let mut obj = message(name, raw)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}
