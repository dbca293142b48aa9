//! Authentication: who a request is. Bearer tokens from the static token file, then client
//! certificates signed by the client CA (CN is the user, O the groups), else anonymous. A
//! bad token or a certificate the client CA did not sign (or that expired) is 401, as
//! kube-apiserver answers it.

mod tokens;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use serde_json::json;

use crate::AppState;
use crate::status::json_response;
pub use tokens::load_token_file;

/// An authenticated (or anonymous) user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// The certificates a client presented on its connection (empty: none).
#[derive(Clone, Default)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

/// Credentials that do not check out (answered 401), with why, for the log.
#[derive(Debug)]
pub struct Unauthenticated(pub &'static str);

/// How requests are authenticated.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// token -> user, from `--token-auth-file`.
    pub tokens: Arc<std::collections::HashMap<String, UserInfo>>,
    /// Verifies client certificates against the client CA (None: no client certificates).
    pub client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

fn unauthorized() -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    json_response(StatusCode::UNAUTHORIZED, &body, &[]).into_response()
}

/// The user of a verified client certificate.
fn cert_user(cert: &CertificateDer<'_>) -> Option<UserInfo> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

impl Authenticator {
    /// Who sent `req`; Err for credentials that do not check out.
    pub fn authenticate(&self, req: &Request) -> Result<UserInfo, Unauthenticated> {
        if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(Unauthenticated("not a bearer token"))?;
            return self
                .tokens
                .get(token)
                .cloned()
                .map(UserInfo::authenticated)
                .ok_or(Unauthenticated("unknown token"));
        }
        let certs = req
            .extensions()
            .get::<PeerCerts>()
            .cloned()
            .unwrap_or_default();
        let Some((leaf, intermediates)) = certs.0.split_first() else {
            return Ok(UserInfo::anonymous());
        };
        let Some(verifier) = &self.client_ca else {
            return Err(Unauthenticated("client certificates are not accepted"));
        };
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|_| Unauthenticated("the client certificate does not verify"))?;
        cert_user(leaf)
            .map(UserInfo::authenticated)
            .ok_or(Unauthenticated("the client certificate names no user"))
    }
}

/// Authenticate every request; the user goes into the request's extensions.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match state.authenticator.authenticate(&req) {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(Unauthenticated(why)) => {
            tracing::debug!(why, "unauthenticated request");
            unauthorized()
        }
    }
}

/// POST authentication.k8s.io/v1 selfsubjectreviews: who the server takes the caller for
/// (`kubectl auth whoami`).
pub async fn self_subject_review(user: Option<axum::Extension<UserInfo>>) -> Response {
    let user = user.map(|u| u.0).unwrap_or_else(UserInfo::anonymous);
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    let body = json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null}, "status": {"userInfo": info}});
    json_response(StatusCode::CREATED, &body, &[]).into_response()
}
