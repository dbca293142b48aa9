//! Running a whole plugin list as libcni does: ADD in order, each plugin getting the
//! previous one's result as prevResult; DEL in reverse order and CHECK in order, each
//! plugin getting the cached ADD result as prevResult.

use serde_json::Value;

use super::config::{NetworkList, Version};
use super::exec::{Op, Runtime, invoke};
use super::result::convert;
use crate::pod::NetworkError;

/// ADD: returns the last plugin's result, in the list's cniVersion.
pub fn add(list: &NetworkList, rt: &Runtime<'_>) -> Result<Value, NetworkError> {
    let version = list.cni_version.as_deref();
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let prev_result = prev.as_ref().map(|p| convert(p, version));
        let conf = list.plugin_config(i, prev_result.as_ref());
        let plugin_type = NetworkList::plugin_type(plugin);
        prev = invoke(rt, Op::Add, plugin_type, &list.name, &conf)?;
    }
    prev.map(|p| convert(&p, version)).ok_or_else(|| {
        NetworkError::Failed(format!(
            "network {:?}: the plugins returned no result",
            list.name
        ))
    })
}

/// DEL: every plugin runs even if one fails (each must tolerate a repeated DEL); the
/// first failure is returned. prevResult is given from 0.4.0 on.
pub fn del(
    list: &NetworkList,
    rt: &Runtime<'_>,
    cached: Option<&Value>,
) -> Result<(), NetworkError> {
    let prev = cached
        .filter(|_| list.version() >= Version::V0_4_0)
        .map(|c| convert(c, list.cni_version.as_deref()));
    let mut first_error = None;
    for (i, plugin) in list.plugins.iter().enumerate().rev() {
        let conf = list.plugin_config(i, prev.as_ref());
        let plugin_type = NetworkList::plugin_type(plugin);
        if let Err(e) = invoke(rt, Op::Del, plugin_type, &list.name, &conf) {
            tracing::warn!(plugin = plugin_type, container = rt.container_id, error = %e, "CNI DEL failed");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// CHECK: skipped for lists older than 0.4.0 and lists with disableCheck.
pub fn check(list: &NetworkList, rt: &Runtime<'_>, cached: &Value) -> Result<(), NetworkError> {
    if list.version() < Version::V0_4_0 || list.disable_check {
        return Ok(());
    }
    let prev = convert(cached, list.cni_version.as_deref());
    for (i, plugin) in list.plugins.iter().enumerate() {
        let conf = list.plugin_config(i, Some(&prev));
        invoke(
            rt,
            Op::Check,
            NetworkList::plugin_type(plugin),
            &list.name,
            &conf,
        )?;
    }
    Ok(())
}
