//! Bootstrap tokens (`<id>.<secret>`, 6 and 16 of [a-z0-9]): Secrets of type
//! `bootstrap.kubernetes.io/token` named `bootstrap-token-<id>` in kube-system, usable for
//! authentication while `usage-bootstrap-authentication` is "true" and `expiration` has not
//! passed. The user is `system:bootstrap:<id>` in `system:bootstrappers` and the secret's
//! `auth-extra-groups`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::{Unauthenticated, UserInfo};

fn well_formed(part: &str, len: usize) -> bool {
    part.len() == len
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The (id, secret) of a token that looks like a bootstrap token.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    (well_formed(id, 6) && well_formed(secret, 16)).then_some((id, secret))
}

fn field(secret: &Value, key: &str) -> Option<String> {
    let raw = secret["data"][key].as_str()?;
    String::from_utf8(STANDARD.decode(raw).ok()?).ok()
}

/// Same bytes, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The user of bootstrap token `id.secret`.
pub async fn authenticate(
    registry: &minik_registry::Registry,
    id: &str,
    secret: &str,
) -> Result<UserInfo, Unauthenticated> {
    let info = minik_api::builtin("", "v1", "secrets");
    let name = format!("bootstrap-token-{id}");
    let stored = registry
        .get(info, Some("kube-system"), &name)
        .await
        .map_err(|_| Unauthenticated("unknown bootstrap token"))?;
    if stored["type"] != "bootstrap.kubernetes.io/token"
        || stored.pointer("/metadata/deletionTimestamp").is_some()
    {
        return Err(Unauthenticated("unknown bootstrap token"));
    }
    let want = field(&stored, "token-secret").unwrap_or_default();
    if field(&stored, "token-id").as_deref() != Some(id)
        || !same(want.as_bytes(), secret.as_bytes())
    {
        return Err(Unauthenticated("wrong bootstrap token secret"));
    }
    if field(&stored, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(Unauthenticated("bootstrap token not for authentication"));
    }
    if let Some(exp) = field(&stored, "expiration") {
        let expired = chrono::DateTime::parse_from_rfc3339(&exp)
            .map(|t| t < chrono::Utc::now())
            .unwrap_or(true);
        if expired {
            return Err(Unauthenticated("expired bootstrap token"));
        }
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    for g in field(&stored, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| g.starts_with("system:bootstrappers:"))
    {
        groups.push(g.to_string());
    }
    Ok(UserInfo {
        name: format!("system:bootstrap:{id}"),
        uid: String::new(),
        groups,
    }
    .authenticated())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shapes() {
        assert_eq!(
            super::parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(super::parse("abcdef.0123456789ABCDEF"), None);
        assert_eq!(super::parse("abc.0123456789abcdef"), None);
        assert!(super::same(b"abc", b"abc") && !super::same(b"abc", b"abd"));
    }
}
