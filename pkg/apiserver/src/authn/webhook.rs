//! Webhook token authentication (`--authentication-token-webhook-config-file`): tokens no
//! other authenticator knows are sent to a remote service as TokenReviews; its answers are
//! remembered for `--authentication-token-webhook-cache-ttl` (2 minutes by default).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Unauthenticated, UserInfo};
use crate::webhook::{Cache, WebhookClient};

pub struct TokenWebhook {
    client: WebhookClient,
    ttl: Duration,
    cache: Cache<Option<UserInfo>>,
}

fn key(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenWebhook {
    pub fn new(client: WebhookClient, ttl: Duration) -> Self {
        TokenWebhook {
            client,
            ttl,
            cache: Cache::default(),
        }
    }

    /// The user the webhook says `token` belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<UserInfo, Unauthenticated> {
        let k = key(token);
        let known = match self.cache.get(&k) {
            Some(v) => v,
            None => {
                let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token}});
                let answer = self.client.post(&review).await.map_err(|e| {
                    tracing::warn!(error = %e, "token webhook failed");
                    Unauthenticated("the token webhook failed")
                })?;
                let status = &answer["status"];
                let user = (status["authenticated"] == true).then(|| UserInfo {
                    name: status["user"]["username"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    uid: status["user"]["uid"].as_str().unwrap_or("").to_string(),
                    groups: status["user"]["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                });
                self.cache.put(k, user.clone(), self.ttl);
                user
            }
        };
        known
            .filter(|u| !u.name.is_empty())
            .map(UserInfo::authenticated)
            .ok_or(Unauthenticated("the token webhook does not know the token"))
    }
}
