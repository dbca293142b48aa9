//! Authentication: who a request is. Bearer tokens from the static token file, then client
//! certificates signed by the client CA (CN is the user, O the groups), else anonymous. A
//! bad token or a certificate the client CA did not sign (or that expired) is 401, as
//! kube-apiserver answers it.

mod bootstrap;
pub mod oidc;
pub mod oidc_config;
pub mod requestheader;
pub mod serviceaccount;
mod tokens;
pub mod webhook;

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

pub use minik_registry::UserInfo;

/// The certificates a client presented on its connection (empty: none), and what they were
/// found to say, judged once per connection.
#[derive(Clone, Default)]
pub struct PeerCerts(
    pub Arc<Vec<CertificateDer<'static>>>,
    pub Arc<std::sync::OnceLock<Result<UserInfo, &'static str>>>,
    /// Whether they are a trusted front proxy's.
    pub Arc<std::sync::OnceLock<bool>>,
);

/// The identity of an in-process client (controllers, scheduler, the local kubelet), set on
/// its requests by the client itself. Requests from the network never carry it: their
/// extensions are made fresh per request by the HTTP server.
#[derive(Clone, Debug)]
pub struct LocalIdentity(pub UserInfo);

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
    /// Signs and verifies service-account tokens (None: none are issued or accepted).
    pub service_accounts: Option<Arc<serviceaccount::TokenSigner>>,
    /// Front proxies whose X-Remote-User headers are believed.
    pub request_header: Option<Arc<requestheader::RequestHeader>>,
    /// Asked about tokens nothing else knows.
    pub webhook: Option<Arc<webhook::TokenWebhook>>,
    /// JWT authenticators of external OIDC issuers.
    pub oidc: Arc<Vec<oidc::JwtAuthenticator>>,
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
    pub async fn authenticate(
        &self,
        registry: &minik_registry::Registry,
        headers: &axum::http::HeaderMap,
        certs: &PeerCerts,
    ) -> Result<UserInfo, Unauthenticated> {
        if let Some(proxy) = &self.request_header
            && !certs.0.is_empty()
            && *certs.2.get_or_init(|| proxy.trusts(&certs.0))
            && let Some(user) = proxy.user(headers)
        {
            return Ok(user.authenticated());
        }
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .ok()
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(Unauthenticated("not a bearer token"))?;
            if let Some(user) = self.tokens.get(token) {
                return Ok(user.clone().authenticated());
            }
            if let Some((id, secret)) = bootstrap::parse(token) {
                return bootstrap::authenticate(registry, id, secret).await;
            }
            let signed = self.service_accounts.as_ref().and_then(|s| s.verify(token));
            if let Some(claims) = signed {
                return self.service_account(registry, token, claims).await;
            }
            let issuer = oidc::JwtAuthenticator::issuer_of(token);
            if let Some(jwt) = self
                .oidc
                .iter()
                .find(|a| issuer.as_deref() == Some(a.issuer_url()))
            {
                return jwt.authenticate(token).await;
            }
            return match &self.webhook {
                Some(w) => w.authenticate(token).await,
                None => Err(Unauthenticated("unknown token")),
            };
        }
        certs
            .1
            .get_or_init(|| self.client_certificate(&certs.0))
            .clone()
            .map_err(Unauthenticated)
    }

    fn client_certificate(
        &self,
        chain: &[CertificateDer<'static>],
    ) -> Result<UserInfo, &'static str> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Ok(UserInfo::anonymous());
        };
        let Some(verifier) = &self.client_ca else {
            return Err("client certificates are not accepted");
        };
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|_| "the client certificate does not verify")?;
        cert_user(leaf)
            .map(UserInfo::authenticated)
            .ok_or("the client certificate names no user")
    }
}

impl Authenticator {
    /// A service-account token: signed by us, unexpired, for our audience, and naming a
    /// service account (and bound object) that still exists with the same uid.
    async fn service_account(
        &self,
        registry: &minik_registry::Registry,
        token: &str,
        claims: serde_json::Value,
    ) -> Result<UserInfo, Unauthenticated> {
        let subject = serviceaccount::subject(&claims).ok_or(Unauthenticated("wrong audience"))?;
        if subject.legacy {
            // A legacy token stands while its secret still holds it.
            let (_, name, _) = subject.bound.clone().unwrap_or_default();
            let secret = registry
                .get(
                    minik_api::builtin("", "v1", "secrets"),
                    Some(&subject.namespace),
                    &name,
                )
                .await
                .map_err(|_| Unauthenticated("the token's secret is gone"))?;
            let held = secret["data"]["token"].as_str().and_then(|t| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, t).ok()
            });
            if held.as_deref() != Some(token.as_bytes()) {
                return Err(Unauthenticated("the token's secret holds another token"));
            }
        }
        let exists = |plural: &'static str, ns: Option<String>, name: String, uid: String| {
            let info = minik_api::builtin("", "v1", plural);
            async move {
                match registry.get(info, ns.as_deref(), &name).await {
                    Ok(o) => uid.is_empty() || o.pointer("/metadata/uid") == Some(&json!(uid)),
                    Err(_) => false,
                }
            }
        };
        let (sa, sa_uid) = subject.service_account.clone();
        let ns = Some(subject.namespace.clone());
        if !exists("serviceaccounts", ns.clone(), sa, sa_uid).await {
            return Err(Unauthenticated("the service account is gone"));
        }
        if let Some((kind, name, uid)) = subject.bound.clone() {
            let (plural, ns) = match kind.as_str() {
                "pod" => ("pods", ns),
                "secret" => ("secrets", ns),
                _ => ("nodes", None),
            };
            if !exists(plural, ns, name, uid).await {
                return Err(Unauthenticated("the object the token is bound to is gone"));
            }
        }
        Ok(subject.user)
    }
}

/// GET /.well-known/openid-configuration.
pub async fn openid_configuration(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("kubernetes.default.svc");
    let server = format!("https://{host}");
    match state.authenticator.service_accounts {
        Some(_) => {
            json_response(StatusCode::OK, &serviceaccount::discovery(&server), &[]).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// GET /openid/v1/jwks.
pub async fn jwks(State(state): State<AppState>) -> Response {
    match &state.authenticator.service_accounts {
        Some(s) => json_response(StatusCode::OK, &s.jwks(), &[]).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Authenticate every request; the user goes into the request's extensions.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(LocalIdentity(user)) = req.extensions().get::<LocalIdentity>().cloned() {
        req.extensions_mut().insert(user);
        return next.run(req).await;
    }
    let certs = req
        .extensions()
        .get::<PeerCerts>()
        .cloned()
        .unwrap_or_default();
    let found = state
        .authenticator
        .authenticate(&state.registry, req.headers(), &certs)
        .await;
    match found {
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
