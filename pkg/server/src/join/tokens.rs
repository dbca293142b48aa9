//! The server's join tokens, as k3s has them: the server token (`--token`/`--token-file`,
//! kept in `<data-dir>/server/token` and `node-token`) and the optional agent token
//! (`--agent-token`/`--agent-token-file`, written to `<data-dir>/server/agent-token`), a
//! second secret agents may join with that is not the server's. Each secret authenticates
//! as a bootstrapper: it may only ask for a kubelet client certificate, approved at once.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use minik_auth::join_token::{self, JoinToken};
use minik_registry::UserInfo;

/// Who the server token's secret authenticates as.
pub const TOKEN_USER: &str = "system:bootstrap:server";

/// Who the agent token's secret authenticates as.
pub const AGENT_TOKEN_USER: &str = "system:bootstrap:agent";

/// Why the tokens cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{flag}: {source}")]
    Parse {
        flag: &'static str,
        #[source]
        source: join_token::TokenError,
    },
    #[error(
        "{flag} pins a CA hash ({given}) that is not this server's ({ours}): give only the \
         secret, or the token this server printed"
    )]
    OtherCa {
        flag: &'static str,
        given: String,
        ours: String,
    },
    #[error("{flag}-file {}: {why}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{flag} and {flag}-file cannot both be given")]
    Both { flag: &'static str },
    #[error(
        "--agent-token must not be the server token's secret: agents joining with it would \
         hold the server token"
    )]
    SameAsServer,
    #[error("{0}")]
    Write(#[from] minik_auth::Error),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A token flag's value: `value` itself, or the content of `file` (trimmed; a missing or
/// empty file is an error). `flag` is the value flag's name, e.g. `--token` (the file's is
/// `--token-file`).
pub fn flag_or_file(
    flag: &'static str,
    value: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, TokenError> {
    let Some(path) = file else {
        return Ok(value);
    };
    if value.is_some() {
        return Err(TokenError::Both { flag });
    }
    let bad = |why: String| TokenError::File {
        flag,
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    Ok(Some(text.to_string()))
}

/// Check the token flags' values before anything is made: each must parse, and the agent
/// token must not be the server token (`join_tokens` checks the pinned CA and the kept
/// server token later).
pub fn check_flags(server: Option<&str>, agent: Option<&str>) -> Result<(), TokenError> {
    let parse = |flag: &'static str, t: Option<&str>| {
        t.map(|t| JoinToken::parse(t).map_err(|source| TokenError::Parse { flag, source }))
            .transpose()
    };
    let server = parse("--token", server)?;
    let agent = parse("--agent-token", agent)?;
    match (server, agent) {
        (Some(s), Some(a)) if s.credential == a.credential => Err(TokenError::SameAsServer),
        _ => Ok(()),
    }
}

/// The secrets agents join with and where the token to give them is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokens {
    /// The server token's secret.
    pub server: String,
    /// The agent token's secret, when one is given.
    pub agent: Option<String>,
    /// The file holding the full token agents should join with: `agent-token` when there
    /// is an agent token, else `node-token`.
    pub join_file: PathBuf,
}

/// The server's tokens. The server secret is `server_flag`'s (a full token must pin this
/// server's CA), else the one kept in the data dir, else a new one; the agent secret is
/// `agent_flag`'s (never kept across starts without the flag). Everything is checked before
/// anything is written: then the full server token goes to `<data-dir>/server/token` and
/// `node-token`, the full agent token (`K10<hash>::node:<secret>`) to `agent-token` (all
/// 0600), and without an agent token a stale `agent-token` is removed.
pub fn join_tokens(
    data_dir: &Path,
    server_flag: Option<&str>,
    agent_flag: Option<&str>,
    ca_bundle: &str,
) -> Result<JoinTokens, TokenError> {
    let dir = data_dir.join("server");
    let file = dir.join("token");
    let ours = join_token::ca_hash(ca_bundle.as_bytes());
    let server = match server_flag {
        Some(t) => secret_of("--token", t, &ours)?,
        None => match std::fs::read_to_string(&file) {
            Ok(text) => {
                JoinToken::parse(&text)
                    .map_err(|source| TokenError::Parse {
                        flag: "the kept server token",
                        source,
                    })?
                    .credential
            }
            Err(e) if e.kind() == ErrorKind::NotFound => minik_controllers::util::random_suffix(32),
            Err(source) => return Err(TokenError::Read { path: file, source }),
        },
    };
    let agent = agent_flag
        .map(|t| secret_of("--agent-token", t, &ours))
        .transpose()?;
    if agent.as_ref() == Some(&server) {
        return Err(TokenError::SameAsServer);
    }
    let bundle = ca_bundle.as_bytes();
    let text = format!("{}\n", join_token::server_token(bundle, &server));
    minik_auth::write_mode(&file, text.as_bytes(), 0o600)?;
    let node_token = dir.join("node-token");
    minik_auth::write_mode(&node_token, text.as_bytes(), 0o600)?;
    let agent_file = dir.join("agent-token");
    let join_file = match &agent {
        Some(secret) => {
            let text = format!("{}\n", join_token::agent_token(bundle, secret));
            minik_auth::write_mode(&agent_file, text.as_bytes(), 0o600)?;
            agent_file
        }
        None => {
            match std::fs::remove_file(&agent_file) {
                Ok(()) => {
                    tracing::info!(file = %agent_file.display(), "no --agent-token: removed the old agent token");
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(TokenError::Remove {
                        path: agent_file,
                        source,
                    });
                }
            }
            node_token
        }
    };
    Ok(JoinTokens {
        server,
        agent,
        join_file,
    })
}

/// The secret of a token flag's value; a full token must pin the CA hash `ours`.
fn secret_of(flag: &'static str, token: &str, ours: &str) -> Result<String, TokenError> {
    let t = JoinToken::parse(token).map_err(|source| TokenError::Parse { flag, source })?;
    if let Some(given) = t.ca_hash.filter(|h| h != ours) {
        return Err(TokenError::OtherCa {
            flag,
            given,
            ours: ours.to_string(),
        });
    }
    Ok(t.credential)
}

/// Add the join tokens' secrets to the static tokens: bootstrappers that may ask for a
/// kubelet client certificate and nothing else.
pub fn authenticate(tokens: &mut HashMap<String, UserInfo>, join: &JoinTokens) {
    add_bootstrapper(tokens, &join.server, TOKEN_USER, "server-token");
    if let Some(agent) = &join.agent {
        add_bootstrapper(tokens, agent, AGENT_TOKEN_USER, "agent-token");
    }
}

fn add_bootstrapper(tokens: &mut HashMap<String, UserInfo>, secret: &str, user: &str, kind: &str) {
    tokens.insert(
        secret.to_string(),
        UserInfo {
            name: user.into(),
            uid: String::new(),
            groups: vec![
                "system:bootstrappers".into(),
                format!("system:bootstrappers:minik:{kind}"),
            ],
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "CA";

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join("server").join(name)).unwrap()
    }

    #[test]
    fn the_token_is_kept_and_pins_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = join_tokens(d, None, None, CA).unwrap();
        assert_eq!(t.server.len(), 32);
        assert_eq!(t.agent, None);
        assert_eq!(t.join_file, d.join("server/node-token"));
        let full = join_token::server_token(CA.as_bytes(), &t.server);
        assert_eq!(read(d, "node-token").trim(), full);
        assert_eq!(read(d, "token").trim(), full);
        // The same secret at the next start; --token replaces it.
        assert_eq!(join_tokens(d, None, None, CA).unwrap().server, t.server);
        assert_eq!(
            join_tokens(d, Some("mine"), None, CA).unwrap().server,
            "mine"
        );
        assert_eq!(join_tokens(d, None, None, CA).unwrap().server, "mine");
        // A full token must be this server's.
        let full = read(d, "token");
        assert!(join_tokens(d, Some(&full), None, CA).is_ok());
        let e = join_tokens(d, Some(&full), None, "other CA").unwrap_err();
        assert!(
            matches!(
                e,
                TokenError::OtherCa {
                    flag: "--token",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("not this server's"), "{e}");
    }

    #[test]
    fn the_agent_token_is_written_then_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = join_tokens(d, Some("srv"), Some("agt"), CA).unwrap();
        assert_eq!(
            (t.server.as_str(), t.agent.as_deref()),
            ("srv", Some("agt"))
        );
        assert_eq!(t.join_file, d.join("server/agent-token"));
        let full = join_token::agent_token(CA.as_bytes(), "agt");
        assert!(full.ends_with("::node:agt"));
        assert_eq!(read(d, "agent-token").trim(), full);
        let mode = std::fs::metadata(&t.join_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The server token is still written, and unchanged.
        assert!(read(d, "node-token").trim().ends_with("::server:srv"));
        // Given again in full form (this server's CA): the same token.
        let again = join_tokens(d, None, Some(&full), CA).unwrap();
        assert_eq!(again.agent.as_deref(), Some("agt"));
        assert_eq!(again.server, "srv");
        // Dropped: no agent token and no file.
        let t = join_tokens(d, None, None, CA).unwrap();
        assert_eq!(t.agent, None);
        assert_eq!(t.join_file, d.join("server/node-token"));
        assert!(!d.join("server/agent-token").exists());
    }

    #[test]
    fn bad_agent_tokens_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let other = join_token::agent_token(b"other CA", "agt");
        let e = join_tokens(d, Some("srv"), Some(&other), CA).unwrap_err();
        assert!(
            matches!(
                &e,
                TokenError::OtherCa {
                    flag: "--agent-token",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("--agent-token pins a CA hash"),
            "{e}"
        );
        let e = join_tokens(d, Some("srv"), Some("srv"), CA).unwrap_err();
        assert!(matches!(e, TokenError::SameAsServer), "{e}");
        // The kept server secret counts too.
        join_tokens(d, Some("srv"), None, CA).unwrap();
        let before = read(d, "token");
        let e = join_tokens(d, None, Some("srv"), CA).unwrap_err();
        assert!(matches!(e, TokenError::SameAsServer), "{e}");
        let e = join_tokens(d, Some("new"), Some(" "), CA).unwrap_err();
        assert!(
            e.to_string().contains("--agent-token: the token is empty"),
            "{e}"
        );
        // Refused tokens wrote nothing.
        assert_eq!(read(d, "token"), before);
        assert!(!d.join("server/agent-token").exists());
    }

    #[test]
    fn flags_are_checked_before_anything_is_made() {
        assert!(check_flags(None, None).is_ok());
        assert!(check_flags(Some("a"), Some("b")).is_ok());
        let full = join_token::agent_token(CA.as_bytes(), "a");
        let e = check_flags(Some("a"), Some(&full)).unwrap_err();
        assert!(matches!(e, TokenError::SameAsServer), "{e}");
        let e = check_flags(None, Some("")).unwrap_err();
        assert!(e.to_string().starts_with("--agent-token:"), "{e}");
        let e = check_flags(Some("K10abc::server:x"), None).unwrap_err();
        assert!(e.to_string().starts_with("--token:"), "{e}");
    }

    #[test]
    fn token_files_are_read_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "  s3cret \n").unwrap();
        let got = flag_or_file("--token", None, Some(&file)).unwrap();
        assert_eq!(got.as_deref(), Some("s3cret"));
        let got = flag_or_file("--agent-token", Some("v".into()), None).unwrap();
        assert_eq!(got.as_deref(), Some("v"));
        assert_eq!(flag_or_file("--token", None, None).unwrap(), None);
        let e = flag_or_file("--token", Some("v".into()), Some(&file)).unwrap_err();
        assert!(matches!(e, TokenError::Both { .. }), "{e}");
    }

    #[test]
    fn missing_or_empty_token_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n \n").unwrap();
        let e = flag_or_file("--agent-token", None, Some(&empty)).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("--agent-token-file "), "{text}");
        assert!(text.ends_with(": the file is empty"), "{text}");
        let missing = dir.path().join("missing");
        let e = flag_or_file("--token", None, Some(&missing)).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("--token-file "), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }

    #[test]
    fn both_secrets_authenticate_as_bootstrappers() {
        let mut tokens = HashMap::new();
        let join = JoinTokens {
            server: "srv".into(),
            agent: Some("agt".into()),
            join_file: PathBuf::new(),
        };
        authenticate(&mut tokens, &join);
        assert_eq!(tokens["srv"].name, TOKEN_USER);
        assert_eq!(tokens["agt"].name, AGENT_TOKEN_USER);
        for user in tokens.values() {
            assert!(user.groups.iter().any(|g| g == "system:bootstrappers"));
        }
        assert_eq!(
            tokens["agt"].groups[1],
            "system:bootstrappers:minik:agent-token"
        );
    }
}
