//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`) turned into JSON, for every
//! built-in type, from a schema table generated from the k8s-pb crate at build time.

mod decode;
mod encode;
mod names;

pub use decode::{ProtoError, decode_envelope};
pub use encode::encode_envelope;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Bytes,
    Bool,
    Int,
    Double,
    /// A nested message, by its full name (`api.core.v1.PodSpec`).
    Message(&'static str),
    MapString,
    MapBytes,
    MapMessage(&'static str),
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// The Rust (snake_case) name; the JSON name comes from the OpenAPI schema.
    pub name: &'static str,
    pub kind: Kind,
    pub repeated: bool,
}

/// One message type.
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

include!(concat!(env!("OUT_DIR"), "/proto_schema.rs"));
