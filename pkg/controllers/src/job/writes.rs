//! The resourceVersion of the last status a controller wrote for each object: until its cache
//! shows that version, the cache is older than what the controller knows, and a sync would act
//! on a stale object (count a pod twice, start a Job twice).

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<String, u64>>);

fn version(rv: Option<&str>) -> Option<u64> {
    rv.and_then(|v| v.parse().ok())
}

impl OwnWrites {
    pub fn wrote(&self, key: &str, rv: Option<&str>) {
        if let Some(v) = version(rv) {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            m.insert(key.to_string(), v);
        }
    }

    /// Whether the cached object is at least as new as the last write (minik's
    /// resourceVersions are numbers; anything else counts as caught up).
    pub fn caught_up(&self, key: &str, cached: Option<&str>) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(written) = m.get(key).copied() else {
            return true;
        };
        match version(cached) {
            Some(c) if c < written => false,
            _ => {
                m.remove(key);
                true
            }
        }
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_older_than_the_last_write_is_not_caught_up() {
        let w = OwnWrites::default();
        assert!(w.caught_up("a", Some("5")));
        w.wrote("a", Some("10"));
        assert!(!w.caught_up("a", Some("9")));
        assert!(w.caught_up("a", Some("10")));
        // Once caught up, older versions are not held against it again.
        assert!(w.caught_up("a", Some("3")));
        w.wrote("b", Some("7"));
        assert!(w.caught_up("b", Some("not-a-number")));
    }
}
