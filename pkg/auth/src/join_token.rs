//! The token agents join with, in k3s's format: `K10<sha256 of the server CA bundle, hex>::
//! <user>:<secret>` (the server's own token, user `server`; or the agent token, user
//! `node`), `K10<hash>::<id>.<secret>` (a bootstrap token with the CA pinned), or just the
//! secret part (the CA is then taken on trust, as k3s does with a short token).

use std::fmt::Write as _;

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The hash of the CA bundle the server must present (None: not pinned).
    pub ca_hash: Option<String>,
    /// What authenticates the agent: the server's or agent token's secret, or a bootstrap
    /// token `<id>.<secret>`.
    pub credential: String,
}

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error(
        "the token's CA hash {0:?} is not 64 hex digits (a token looks like K10<hash>::server:<secret>)"
    )]
    BadHash(String),
    #[error(
        "the token has nothing after its CA hash (a token looks like K10<hash>::server:<secret>)"
    )]
    NoSecret,
}

/// The user name of a server token's credential.
pub const SERVER_USER: &str = "server";

/// The user name of an agent token's credential (k3s's `--agent-token`).
pub const AGENT_USER: &str = "node";

impl JoinToken {
    /// Read a token as `minik agent --token` and `minik server --token` take it.
    pub fn parse(token: &str) -> Result<JoinToken, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        let Some(rest) = token.strip_prefix("K10") else {
            return Ok(JoinToken {
                ca_hash: None,
                credential: token.to_string(),
            });
        };
        let Some((hash, cred)) = rest.split_once("::") else {
            // Not the full format: a secret that happens to start with K10.
            return Ok(JoinToken {
                ca_hash: None,
                credential: token.to_string(),
            });
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::BadHash(hash.to_string()));
        }
        let credential = match cred.split_once(':') {
            Some((user, secret)) if user == SERVER_USER || user == AGENT_USER => secret,
            _ => cred,
        };
        if credential.is_empty() {
            return Err(TokenError::NoSecret);
        }
        Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            credential: credential.to_string(),
        })
    }

    /// Whether the credential is a bootstrap token (`<6 chars>.<16 chars>`, [a-z0-9]).
    pub fn is_bootstrap(&self) -> bool {
        let ok = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        matches!(self.credential.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
    }
}

/// The hash a token pins: SHA-256 of the CA bundle exactly as /cacerts serves it, in hex.
pub fn ca_hash(bundle: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bundle);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The full server token for `secret` and the server's CA bundle.
pub fn server_token(bundle: &[u8], secret: &str) -> String {
    full_token(bundle, SERVER_USER, secret)
}

/// The full agent token (`K10<hash>::node:<secret>`) for `secret` and the server's CA bundle.
pub fn agent_token(bundle: &[u8], secret: &str) -> String {
    full_token(bundle, AGENT_USER, secret)
}

fn full_token(bundle: &[u8], user: &str, secret: &str) -> String {
    format!("K10{}::{user}:{secret}", ca_hash(bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_tokens_round_trip() {
        let full = server_token(b"ca pem", "s3cret");
        assert!(full.starts_with("K10") && full.ends_with("::server:s3cret"));
        let t = JoinToken::parse(&full).unwrap();
        assert_eq!(t.ca_hash.as_deref(), Some(ca_hash(b"ca pem").as_str()));
        assert_eq!(t.credential, "s3cret");
        assert!(!t.is_bootstrap());
        // sha256("abc"), a known vector.
        assert_eq!(
            ca_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn agent_tokens_round_trip() {
        let full = agent_token(b"ca pem", "agent-s3cret");
        assert!(full.starts_with("K10") && full.ends_with("::node:agent-s3cret"));
        let t = JoinToken::parse(&full).unwrap();
        assert_eq!(t.ca_hash.as_deref(), Some(ca_hash(b"ca pem").as_str()));
        assert_eq!(t.credential, "agent-s3cret");
        assert!(!t.is_bootstrap());
        // Same hash as the server token of the same CA; only the user differs.
        assert_eq!(
            full.split_once("::").unwrap().0,
            server_token(b"ca pem", "x").split_once("::").unwrap().0
        );
        let hash = "c".repeat(64);
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::node:")),
            Err(TokenError::NoSecret)
        );
        // Another user name is not stripped: the whole `<user>:<secret>` is the credential.
        let t = JoinToken::parse(&format!("K10{hash}::other:x")).unwrap();
        assert_eq!(t.credential, "other:x");
    }

    #[test]
    fn short_and_bootstrap_tokens() {
        let t = JoinToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(t.ca_hash, None);
        assert!(t.is_bootstrap());
        let hash = "a".repeat(64);
        let t = JoinToken::parse(&format!("K10{hash}::abcdef.0123456789abcdef")).unwrap();
        assert_eq!(t.ca_hash.as_deref(), Some(hash.as_str()));
        assert!(t.is_bootstrap());
        assert_eq!(JoinToken::parse("plain").unwrap().credential, "plain");
    }

    #[test]
    fn bad_tokens_are_refused() {
        assert_eq!(JoinToken::parse("  "), Err(TokenError::Empty));
        assert!(matches!(
            JoinToken::parse("K10abc::server:x"),
            Err(TokenError::BadHash(_))
        ));
        let hash = "b".repeat(64);
        assert_eq!(
            JoinToken::parse(&format!("K10{hash}::server:")),
            Err(TokenError::NoSecret)
        );
    }
}
