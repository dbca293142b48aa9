//! The webhook authorizer (`--authorization-mode=...,Webhook` with
//! `--authorization-webhook-config-file`): SubjectAccessReviews sent to a remote service,
//! which allows, denies or has no opinion; allowed answers are remembered for 5 minutes and
//! the others for 30 seconds (kube-apiserver's defaults).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::webhook::{Cache, WebhookClient};

pub struct WebhookAuthorizer {
    client: WebhookClient,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: Cache<Decision>,
}

impl WebhookAuthorizer {
    pub fn new(client: WebhookClient) -> Self {
        WebhookAuthorizer {
            client,
            allowed_ttl: Duration::from_secs(300),
            denied_ttl: Duration::from_secs(30),
            cache: Cache::default(),
        }
    }

    fn review(user: &UserInfo, a: &Attributes) -> Value {
        let mut spec = json!({"user": user.name, "groups": user.groups});
        if !user.uid.is_empty() {
            spec["uid"] = json!(user.uid);
        }
        if a.resource_request {
            let mut r = json!({"verb": a.verb, "group": a.group, "resource": a.resource});
            for (k, v) in [
                ("namespace", &a.namespace),
                ("subresource", &a.subresource),
                ("name", &a.name),
            ] {
                if !v.is_empty() {
                    r[k] = json!(v);
                }
            }
            spec["resourceAttributes"] = r;
        } else {
            spec["nonResourceAttributes"] = json!({"path": a.path, "verb": a.verb});
        }
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
    }

    pub async fn decide(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let review = Self::review(user, a);
        let key = review.to_string();
        if let Some(d) = self.cache.get(&key) {
            return d;
        }
        let answer = match self.client.post(&review).await {
            Ok(a) => a,
            Err(e) => {
                // Not remembered: the next request asks again.
                tracing::warn!(error = %e, "authorization webhook failed");
                return Decision::NoOpinion;
            }
        };
        let status = &answer["status"];
        let reason = status["reason"].as_str().unwrap_or("").to_string();
        let (decision, ttl) = if status["allowed"] == true {
            (Decision::Allow, self.allowed_ttl)
        } else if status["denied"] == true {
            (Decision::Deny(reason), self.denied_ttl)
        } else {
            (Decision::NoOpinion, self.denied_ttl)
        };
        self.cache.put(key, decision.clone(), ttl);
        decision
    }
}
