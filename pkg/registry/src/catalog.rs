//! What a registry serves and how its objects look: the resources (built in and from CRDs),
//! their schemas and printer columns, and conversion from and to their storage versions.

use std::sync::Arc;

use minik_api::ResourceInfo;
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::object_key;
use crate::rest::{Registry, decode};

/// A resource's schema, built in or from a CRD.
pub(crate) enum SchemaRef {
    Builtin(&'static Value),
    Custom(Arc<Value>),
}

impl std::ops::Deref for SchemaRef {
    type Target = Value;
    fn deref(&self) -> &Value {
        match self {
            SchemaRef::Builtin(v) => v,
            SchemaRef::Custom(v) => v,
        }
    }
}

impl Registry {
    /// Every resource served: the built-in ones and those of established CRDs.
    pub fn resources(&self) -> Vec<&'static ResourceInfo> {
        let mut all: Vec<&'static ResourceInfo> = minik_api::all().iter().collect();
        all.extend(self.crds.served());
        all
    }

    /// The served resource with this group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
        minik_api::find(group, version, plural).or_else(|| {
            self.crds
                .served()
                .into_iter()
                .find(|r| r.group == group && r.version == version && r.plural == plural)
        })
    }

    /// Changes whenever the set of served resources does (for caches of discovery and
    /// OpenAPI).
    pub fn api_generation(&self) -> u64 {
        self.crds.generation()
    }

    /// An object as it is stored, unconverted (for built-in kinds that never are).
    pub(crate) async fn get_stored(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let (_, kv) = self
            .store
            .get(&object_key(info, namespace, name), None)
            .await?;
        decode(&kv.ok_or_else(|| ApiError::not_found(info, name))?)
    }

    /// A stored object as `info` shows it (converted from its storage version).
    pub(crate) async fn shown(&self, info: &ResourceInfo, obj: Value) -> Result<Value> {
        match self.conversion_webhook(info) {
            Some(_) => self.custom_shown(info, obj).await,
            None => Ok(crate::convert::from_storage(info, obj)),
        }
    }

    /// An object of `info` as it is stored.
    pub(crate) async fn stored(&self, info: &ResourceInfo, obj: &Value) -> Result<Value> {
        match self.conversion_webhook(info) {
            Some(_) => self.custom_stored(info, obj).await,
            None => Ok(crate::convert::to_storage(info, obj)),
        }
    }

    /// A custom resource's additionalPrinterColumns (empty for built-ins).
    pub fn printer_columns(&self, info: &ResourceInfo) -> Vec<Value> {
        if !info.custom {
            return Vec::new();
        }
        self.crds
            .version(info)
            .map(|(def, i)| def.versions[i].printer_columns.clone())
            .unwrap_or_default()
    }

    /// The schema a CRD gives a custom resource's version.
    pub fn custom_schema(&self, info: &ResourceInfo) -> Option<Value> {
        let (def, i) = self.crds.version(info)?;
        Some((*def.versions[i].schema).clone())
    }

    /// The schema of a resource: the built-in type's, or its CRD version's.
    pub(crate) fn schema_for(&self, info: &ResourceInfo) -> Option<SchemaRef> {
        if info.custom {
            let (def, i) = self.crds.version(info)?;
            return Some(SchemaRef::Custom(def.versions[i].schema.clone()));
        }
        minik_api::schema::of(info).map(SchemaRef::Builtin)
    }
}
