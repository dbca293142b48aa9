//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`) turned into JSON, for every
//! built-in type, from a schema table generated from the k8s-pb crate at build time.

mod decode;
mod encode;
pub(crate) mod names;

pub use decode::{ProtoError, decode_envelope};
pub use encode::{encode_envelope, encode_watch_event};

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
    /// Go's `+patchStrategy` (`merge`, `retainKeys`, `merge,retainKeys`) or "".
    pub patch_strategy: &'static str,
    /// Go's `+patchMergeKey` or "".
    pub merge_key: &'static str,
    /// Go's `+listType` (`atomic`, `set`, `map`) or "".
    pub list_type: &'static str,
    /// Go's `+listMapKey`s.
    pub list_keys: &'static [&'static str],
    /// Go's `+mapType` (`atomic`, `granular`) or "".
    pub map_type: &'static str,
}

/// One message type.
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
    /// Go's `+structType` (`atomic`, `granular`) or "".
    pub struct_type: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/proto_schema.rs"));

/// The message called `name` (`api.core.v1.PodSpec`).
pub fn message(name: &str) -> Option<&'static Message> {
    decode::BY_NAME.get(name).copied()
}

/// The proto message name of an OpenAPI definition: `io.k8s.api.core.v1.Pod` is
/// `api.core.v1.Pod`; the aggregator and apiextensions packages use '-' in OpenAPI and '_'
/// in proto.
pub fn message_of_definition(definition: &str) -> Option<String> {
    Some(definition.strip_prefix("io.k8s.")?.replacen('-', "_", 1))
}
