//! The files of configMap, secret, downwardAPI and projected volumes (kubelet's MakePayload
//! of each plugin), and the bound service account tokens of projected volumes, requested
//! again once 80% of their lifetime (or 24 h) has passed, as kubelet's token manager does.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::embedded::api::{self, Lookups};
use crate::embedded::atomic::{File, Payload};
use crate::embedded::fieldpath::{self, Addresses};
use crate::embedded::resources;

/// The mode files get when a volume says none (0644).
pub const DEFAULT_MODE: i32 = 0o644;

fn mode(m: Option<i32>, default: i32) -> u32 {
    u32::try_from(m.unwrap_or(default)).unwrap_or(0o644) & 0o7777
}

/// The payload of a ConfigMap's or Secret's data (`kind` names it in errors: "configmap"
/// or "secret"): every key, or only `items` under their paths.
pub fn items_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    kind: &str,
) -> Result<Payload, String> {
    let file = |data: &[u8], m: u32, owner: Option<i64>| File {
        data: data.to_vec(),
        mode: m,
        owner: owner.and_then(|u| u32::try_from(u).ok()),
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                payload.insert(k.clone(), file(v, mode(None, default_mode), None));
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(match kind {
                        "configmap" => {
                            format!("configmap references non-existent config key: {}", item.key)
                        }
                        _ => format!("references non-existent secret key: {}", item.key),
                    });
                };
                payload.insert(
                    item.path.clone(),
                    file(v, mode(item.mode, default_mode), item.user),
                );
            }
        }
    }
    Ok(payload)
}

/// The payload of downwardAPI items.
pub fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    addresses: &Addresses,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            fieldpath::value(pod, &f.field_path, addresses)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let c = fieldpath::container(pod, &name)?;
            resources::field_value(r, c, allocatable)?
        } else {
            continue;
        };
        payload.insert(
            item.path.clone(),
            File {
                data: value.into_bytes(),
                mode: mode(item.mode, default_mode),
                owner: None,
            },
        );
    }
    Ok(payload)
}

/// A token already issued: (token, issued, expires).
type Issued = (String, Timestamp, Timestamp);

/// Tokens of one pod's projected volumes, by (volume, path).
#[derive(Debug, Default)]
pub struct Tokens(HashMap<(String, String), Issued>);

impl Tokens {
    /// The token to write, requesting a new one when the old is due for renewal.
    async fn get(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        key: (String, String),
        audience: Option<&str>,
        expiration: i64,
    ) -> Result<String, String> {
        let now = Timestamp::now();
        if let Some((token, issued, expires)) = self.0.get(&key) {
            let ttl = expires.duration_since(*issued);
            let renew_at = *issued + SignedDuration::from_nanos((ttl.as_nanos() / 10 * 8) as i64);
            let day = *issued + SignedDuration::from_hours(24);
            if now < renew_at && now < day {
                return Ok(token.clone());
            }
        }
        let (token, expires) = api::token(client, pod, audience, expiration)
            .await
            .map_err(|e| e.to_string())?;
        self.0.insert(key, (token.clone(), now, expires));
        Ok(token)
    }
}

/// What projecting needs besides the volume.
pub struct Context<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub addresses: &'a Addresses,
    pub allocatable: &'a BTreeMap<String, Quantity>,
    /// The user all containers run as, if one (token files are theirs).
    pub fs_user: Option<u32>,
    pub fs_group: Option<u32>,
}

/// The payload of a projected volume named `volume`.
pub async fn projected_payload(
    ctx: &Context<'_>,
    lookups: &mut Lookups,
    tokens: &mut Tokens,
    volume: &str,
    source: &ProjectedVolumeSource,
) -> Result<Payload, String> {
    let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for s in source.sources.iter().flatten() {
        let part = if let Some(c) = &s.config_map {
            let optional = c.optional.unwrap_or(false);
            match lookups.config_map_data(&c.name, optional).await {
                Ok(data) => items_payload(
                    &data.unwrap_or_default(),
                    c.items.as_deref(),
                    default_mode,
                    optional,
                    "configmap",
                ),
                Err(e) => Err(e.to_string()),
            }
        } else if let Some(c) = &s.secret {
            let optional = c.optional.unwrap_or(false);
            match lookups.secret_data(&c.name, optional).await {
                Ok(data) => items_payload(
                    &data.unwrap_or_default(),
                    c.items.as_deref(),
                    default_mode,
                    optional,
                    "secret",
                ),
                Err(e) => Err(e.to_string()),
            }
        } else if let Some(d) = &s.downward_api {
            downward_payload(
                ctx.pod,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                ctx.addresses,
                ctx.allocatable,
            )
        } else if let Some(t) = &s.service_account_token {
            let key = (volume.to_string(), t.path.clone());
            let expiration = t.expiration_seconds.unwrap_or(3600);
            match tokens
                .get(ctx.client, ctx.pod, key, t.audience.as_deref(), expiration)
                .await
            {
                Ok(token) => {
                    // With fsGroup or a common user the token is 0600 (fsGroup then adds 0040).
                    let m = if ctx.fs_user.is_some() || ctx.fs_group.is_some() {
                        0o600
                    } else {
                        mode(None, default_mode)
                    };
                    let file = File {
                        data: token.into_bytes(),
                        mode: m,
                        owner: ctx.fs_user,
                    };
                    Ok([(t.path.clone(), file)].into_iter().collect())
                }
                Err(e) => Err(e),
            }
        } else {
            continue;
        };
        match part {
            Ok(p) => payload.extend(p),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(payload)
    } else {
        Err(errors.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, Vec<u8>> {
        [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into()
    }

    #[test]
    fn items_select_keys_and_modes() {
        let all = items_payload(&data(), None, 0o640, false, "configmap").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o640);
        let items = [KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o400),
            user: None,
        }];
        let some = items_payload(&data(), Some(&items), 0o644, false, "secret").unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), vec!["dir/b.txt"]);
        assert_eq!(
            (some["dir/b.txt"].mode, some["dir/b.txt"].data.as_slice()),
            (0o400, &b"2"[..])
        );
        let missing = [KeyToPath {
            key: "zz".into(),
            path: "zz".into(),
            mode: None,
            user: None,
        }];
        assert_eq!(
            items_payload(&data(), Some(&missing), 0o644, false, "configmap").unwrap_err(),
            "configmap references non-existent config key: zz"
        );
        assert_eq!(
            items_payload(&data(), Some(&missing), 0o644, false, "secret").unwrap_err(),
            "references non-existent secret key: zz"
        );
        assert!(
            items_payload(&data(), Some(&missing), 0o644, true, "secret")
                .unwrap()
                .is_empty()
        );
    }
}
