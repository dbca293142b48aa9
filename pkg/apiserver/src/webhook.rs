//! Answers of webhooks remembered for a while; the client itself is
//! `minik_registry::kubeclient::WebhookClient`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use minik_registry::kubeclient::WebhookClient;

/// Answers remembered for a time that depends on the answer.
pub struct Cache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Cache<V> {
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: String, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 10_000 {
            let now = Instant::now();
            entries.retain(|_, (until, _)| now < *until);
        }
        entries.insert(key, (Instant::now() + ttl, value));
    }
}
