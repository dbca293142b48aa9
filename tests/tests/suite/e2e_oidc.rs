//! JWT authenticators for an external OIDC issuer the test serves (discovery document and
//! JWKS over HTTPS with its own CA): the --oidc-* flags and an AuthenticationConfiguration
//! with CEL claim mappings and validation rules.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use minik_tests::server::{Kubectl, Server, ok, text};
use minik_tests::tls_server::serve_tls;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

struct Issuer {
    url: String,
    key: EcdsaKeyPair,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn key() -> EcdsaKeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

impl Issuer {
    async fn start() -> Issuer {
        let dir = tempfile::tempdir().unwrap();
        let pki = minik_auth::Pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let key = key();
        let point = key.public_key().as_ref().to_vec();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}]});
        let port: Arc<OnceLock<u16>> = Arc::default();
        let p = port.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move {
                    let base = format!("https://127.0.0.1:{}", p.get().unwrap());
                    Json(json!({"issuer": base, "jwks_uri": format!("{base}/keys")}))
                }),
            )
            .route("/keys", get(move || async move { Json(jwks.clone()) }));
        let bound = serve_tls(app, &pki.serving.cert_pem, &pki.serving.key_pem, None).await;
        port.set(bound).unwrap();
        let ca_file = dir.path().join("issuer-ca.crt");
        std::fs::write(&ca_file, &pki.server_ca.cert_pem).unwrap();
        Issuer {
            url: format!("https://127.0.0.1:{bound}"),
            key,
            ca_file,
            _dir: dir,
        }
    }

    /// A token with `claims` (plus iss, exp) signed by `key` (default: the issuer's).
    fn token(&self, claims: Value, key: Option<&EcdsaKeyPair>) -> String {
        let mut claims = claims;
        claims["iss"] = json!(self.url);
        if claims.get("exp").is_none() {
            claims["exp"] = json!(chrono_now() + 600);
        }
        let header = json!({"alg": "ES256", "kid": "k1"});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = key
            .unwrap_or(&self.key)
            .sign(&rng, input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn whoami(k: &Kubectl, token: &str) -> std::process::Output {
    k.run(&["--token", token, "auth", "whoami", "-o", "json"])
}

fn unauthorized(out: &std::process::Output) -> bool {
    let t = text(out);
    !out.status.success() && (t.contains("Unauthorized") || t.contains("provide credentials"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_flags() {
    let issuer = Issuer::start().await;
    tokio::task::block_in_place(|| {
        let s = Server::start_with(&[
            "--oidc-issuer-url",
            &issuer.url,
            "--oidc-client-id",
            "minik",
            "--oidc-username-claim",
            "email",
            "--oidc-groups-claim",
            "groups",
            "--oidc-groups-prefix",
            "oidc:",
            "--oidc-ca-file",
            issuer.ca_file.to_str().unwrap(),
        ]);
        let good = issuer.token(
            json!({"aud": "minik", "sub": "1", "email": "dana@example.com",
            "email_verified": true, "groups": ["eng", "ops"]}),
            None,
        );
        for k in Kubectl::each(&s) {
            let who: Value = serde_json::from_str(&ok(whoami(&k, &good))).unwrap();
            assert_eq!(who["status"]["userInfo"]["username"], "dana@example.com");
            assert_eq!(
                who["status"]["userInfo"]["groups"],
                json!(["oidc:eng", "oidc:ops", "system:authenticated"])
            );
        }
        let k = &Kubectl::each(&s)[0];
        let other_audience =
            issuer.token(json!({"aud": "else", "email": "dana@example.com"}), None);
        let expired = issuer.token(
            json!({"aud": "minik", "email": "dana@example.com", "exp": chrono_now() - 10}),
            None,
        );
        let forged = issuer.token(
            json!({"aud": "minik", "email": "dana@example.com"}),
            Some(&key()),
        );
        let unverified = issuer.token(
            json!({"aud": "minik", "email": "dana@example.com", "email_verified": false}),
            None,
        );
        for bad in [other_audience, expired, forged, unverified] {
            assert!(unauthorized(&whoami(k, &bad)), "{bad}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_configuration_with_cel() {
    let issuer = Issuer::start().await;
    let ca = std::fs::read_to_string(&issuer.ca_file).unwrap();
    let indented: String = ca.lines().map(|l| format!("      {l}\n")).collect();
    let config = format!(
        "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: {url}\n    audiences: [minik, other]\n    certificateAuthority: |\n{indented}  claimValidationRules:\n  - expression: \"claims.tier == 'gold'\"\n    message: only gold users\n  claimMappings:\n    username:\n      expression: \"claims.sub + '@corp'\"\n    groups:\n      claim: teams\n      prefix: \"corp:\"\n  userValidationRules:\n  - expression: \"!user.username.startsWith('system:')\"\n    message: no system users\n",
        url = issuer.url
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authn.yaml");
    std::fs::write(&path, &config).unwrap();
    tokio::task::block_in_place(|| {
        let s = Server::start_with(&["--authentication-config", path.to_str().unwrap()]);
        let k = &Kubectl::each(&s)[0];
        let gold = issuer.token(
            json!({"aud": ["other"], "sub": "u1", "tier": "gold", "teams": ["eng"]}),
            None,
        );
        let who: Value = serde_json::from_str(&ok(whoami(k, &gold))).unwrap();
        assert_eq!(who["status"]["userInfo"]["username"], "u1@corp");
        assert_eq!(
            who["status"]["userInfo"]["groups"],
            json!(["corp:eng", "system:authenticated"])
        );
        let silver = issuer.token(json!({"aud": "minik", "sub": "u2", "tier": "silver"}), None);
        assert!(unauthorized(&whoami(k, &silver)));
        let system = issuer.token(
            json!({"aud": "minik", "sub": "system:x", "tier": "gold"}),
            None,
        );
        assert!(
            unauthorized(&whoami(k, &system)),
            "the user validation rule refuses system:x@corp"
        );
        // A broken configuration stops the server at start.
        let broken = config.replace("      expression: \"claims.sub + '@corp'\"\n", "");
        let err = minik_tests::server::start_fails(
            &["--authentication-config", "bad.yaml"],
            &[("bad.yaml", &broken)],
        );
        assert!(
            err.contains("jwt[0].claimMappings.username: claim or expression is required"),
            "{err}"
        );
    });
}
