//! Impersonation (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-<key>`): the caller must be
//! allowed the `impersonate` verb on users, groups, uids and userextras; the request then
//! runs as the impersonated user.

use axum::http::HeaderMap;

use super::{Attributes, allowed};
use crate::AppState;
use crate::authn::UserInfo;

/// Why impersonation was refused: 403 with the check that failed, or 400.
pub(super) enum Refusal {
    Forbidden(Attributes),
    BadRequest(String),
}

fn attrs(group: &str, resource: &str, name: &str, sub: &str) -> Attributes {
    Attributes {
        verb: "impersonate".into(),
        resource_request: true,
        group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// The user a request acts as: the caller, or whom it impersonates when allowed.
pub(super) async fn effective_user(
    state: &AppState,
    caller: &UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, Refusal> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let user = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid").into_iter().next();
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("impersonate-extra-")?;
            Some((key.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    let Some(user) = user else {
        if !groups.is_empty() || uid.is_some() || !extras.is_empty() {
            return Err(Refusal::BadRequest(
                "requested impersonation of groups, a uid or extras without a user".into(),
            ));
        }
        return Ok(caller.clone());
    };
    let mut checks = vec![match user.strip_prefix("system:serviceaccount:") {
        Some(sa) => {
            let (ns, name) = sa.split_once(':').unwrap_or(("", sa));
            Attributes {
                namespace: ns.into(),
                ..attrs("", "serviceaccounts", name, "")
            }
        }
        None => attrs("", "users", &user, ""),
    }];
    checks.extend(groups.iter().map(|g| attrs("", "groups", g, "")));
    if let Some(u) = &uid {
        checks.push(attrs("authentication.k8s.io", "uids", u, ""));
    }
    for (key, value) in &extras {
        checks.push(attrs("authentication.k8s.io", "userextras", value, key));
    }
    for a in checks {
        if !allowed(state, caller, &a).await {
            return Err(Refusal::Forbidden(a));
        }
    }
    let mut groups = groups;
    if user != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(UserInfo {
        name: user,
        uid: uid.unwrap_or_default(),
        groups,
    })
}
