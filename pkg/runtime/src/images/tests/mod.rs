//! Tests of the image store: hand-made layer tars and image tarballs.

mod pin;
mod store;
mod unpack;

use std::collections::BTreeMap;
use std::io::Write;

use super::content::sha256;

/// A layer tar built entry by entry.
pub struct LayerTar(tar::Builder<Vec<u8>>);

impl LayerTar {
    pub fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        LayerTar(b)
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_000_000);
        h.set_size(0);
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0, 0);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_owned(path, data, 0o644, 0, 0)
    }

    pub fn file_owned(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A file with PAX xattrs.
    pub fn file_xattr(mut self, path: &str, data: &[u8], name: &str, value: &[u8]) -> Self {
        let key = format!("SCHILY.xattr.{name}");
        self.0
            .append_pax_extensions([(key.as_str(), value)])
            .unwrap();
        self.file(path, data)
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn device(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut h = Self::header(kind, 0o600, 0, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// An OCI image layout, built blob by blob, written as a tarball.
#[derive(Default)]
pub struct Layout {
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub manifests: Vec<serde_json::Value>,
}

/// What `Layout::image` made.
pub struct Made {
    pub manifest: serde_json::Value,
    pub manifest_digest: String,
    pub config_digest: String,
}

impl Layout {
    pub fn blob(&mut self, data: Vec<u8>) -> (String, usize) {
        let d = sha256(&data);
        let n = data.len();
        self.blobs.insert(d.clone(), data);
        (d, n)
    }

    /// An image of `layers` (uncompressed tars, stored as given by `compress`), with a config
    /// running `cmd`; returns its manifest descriptor (not yet in index.json).
    pub fn image(
        &mut self,
        layers: &[Vec<u8>],
        cmd: &[&str],
        compress: fn(&[u8]) -> Vec<u8>,
    ) -> Made {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let config = serde_json::json!({
            "architecture": super::oci::host_platform().architecture, "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/w", "User": "1000"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let (config_digest, config_size) = self.blob(serde_json::to_vec(&config).unwrap());
        let layer_descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                let (d, n) = self.blob(compress(l));
                serde_json::json!({"mediaType": super::oci::OCI_LAYER_GZIP, "digest": d, "size": n})
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": super::oci::OCI_MANIFEST,
            "config": {"mediaType": super::oci::OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layer_descs,
        });
        let (md, mn) = self.blob(serde_json::to_vec(&manifest).unwrap());
        Made {
            manifest: serde_json::json!({"mediaType": super::oci::OCI_MANIFEST, "digest": md, "size": mn}),
            manifest_digest: md,
            config_digest,
        }
    }

    /// The layout as a tar (blobs/sha256/..., index.json, oci-layout).
    pub fn tarball(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, data).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": super::oci::OCI_INDEX, "manifests": self.manifests,
        });
        add("index.json", &serde_json::to_vec(&index).unwrap());
        for (d, data) in &self.blobs {
            add(
                &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
                data,
            );
        }
        b.into_inner().unwrap()
    }
}

/// A descriptor with annotations added.
pub fn annotated(desc: &serde_json::Value, annotations: &[(&str, &str)]) -> serde_json::Value {
    let mut d = desc.clone();
    let map: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    d["annotations"] = serde_json::Value::Object(map);
    d
}
