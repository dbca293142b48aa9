//! Image garbage collection, as kubelet's image manager does it: every image is tracked
//! from when it was first seen and when a container last used it (in memory: images found
//! at start count as seen long ago, as in kubelet); when the image filesystem's usage is at
//! or over the high threshold, images no container uses (running or exited), not pinned
//! and first seen at least the minimum age ago are removed, least recently used first,
//! until usage would be down to the low threshold. Removing an image removes the blobs and
//! unpacked layers nothing else uses (the store does it).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::policy::ImagePolicy;

/// How full a filesystem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub capacity: u64,
    pub available: u64,
}

impl Usage {
    /// The filesystem holding `path` (statvfs).
    pub fn of(path: &Path) -> std::io::Result<Usage> {
        let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
        let frsize = s.fragment_size();
        Ok(Usage {
            capacity: s.blocks().saturating_mul(frsize),
            available: s.blocks_available().saturating_mul(frsize),
        })
    }

    /// kubelet's usage percent: 100 - available * 100 / capacity.
    pub fn percent(&self) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        100u64.saturating_sub(self.available.saturating_mul(100) / self.capacity)
    }

    /// Bytes to free to be down to `low` percent (0 when already there); kubelet's
    /// `capacity * (100 - low) / 100 - available`.
    pub fn to_free(&self, low: u8) -> u64 {
        let keep = u128::from(self.capacity) * u128::from(100 - low.min(100)) / 100;
        u64::try_from(keep)
            .unwrap_or(u64::MAX)
            .saturating_sub(self.available)
    }

    /// Whether image garbage collection should run under `policy`.
    pub fn over(&self, policy: &ImagePolicy) -> bool {
        policy.high < 100 && self.percent() >= u64::from(policy.high)
    }
}

/// One image as the collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub size: u64,
    pub first_detected: SystemTime,
    pub last_used: SystemTime,
    /// A container (running or exited) was made from it, or holds a lease on it.
    pub in_use: bool,
    pub pinned: bool,
}

/// kubelet's freeSpace: the images to remove to free `amount` bytes at `now`, least
/// recently used first (then first detected first), and the bytes they free.
pub fn select(
    images: &[Candidate],
    amount: u64,
    min_age: Duration,
    now: SystemTime,
) -> (Vec<String>, u64) {
    let mut eligible: Vec<&Candidate> = images
        .iter()
        .filter(|i| !i.in_use && !i.pinned)
        .filter(|i| i.last_used < now)
        .filter(|i| now.duration_since(i.first_detected).unwrap_or_default() >= min_age)
        .collect();
    eligible.sort_by(|a, b| {
        (a.last_used, a.first_detected, &a.id).cmp(&(b.last_used, b.first_detected, &b.id))
    });
    let mut freed = 0u64;
    let mut out = Vec::new();
    for i in eligible {
        if freed >= amount {
            break;
        }
        out.push(i.id.clone());
        freed = freed.saturating_add(i.size);
    }
    (out, freed)
}

/// When each image was first seen and last used (kubelet's imageRecords).
#[derive(Debug, Default)]
pub struct Records {
    seen: HashMap<String, (SystemTime, SystemTime)>,
    started: bool,
}

impl Records {
    /// Note the store's images `(id, size, pinned)` at `now`, `in_use` being the ids
    /// containers use; the candidates. Images found by the first look count as seen at
    /// the epoch (kubelet: "unknown, in the past"); images gone are forgotten.
    pub fn detect(
        &mut self,
        images: &[(String, u64, bool)],
        in_use: &BTreeSet<String>,
        now: SystemTime,
    ) -> Vec<Candidate> {
        let detected = if self.started {
            now
        } else {
            SystemTime::UNIX_EPOCH
        };
        self.started = true;
        self.seen
            .retain(|id, _| images.iter().any(|(i, _, _)| i == id));
        images
            .iter()
            .map(|(id, size, pinned)| {
                let record = self
                    .seen
                    .entry(id.clone())
                    .or_insert((detected, SystemTime::UNIX_EPOCH));
                let used = in_use.contains(id);
                if used {
                    record.1 = now;
                }
                Candidate {
                    id: id.clone(),
                    size: *size,
                    first_detected: record.0,
                    last_used: record.1,
                    in_use: used,
                    pinned: *pinned,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn image(id: &str, size: u64, detected: u64, used: u64) -> Candidate {
        Candidate {
            id: id.into(),
            size,
            first_detected: at(detected),
            last_used: at(used),
            in_use: false,
            pinned: false,
        }
    }

    #[test]
    fn usage_is_computed_as_kubelet_does() {
        let u = Usage {
            capacity: 1000,
            available: 150,
        };
        assert_eq!(u.percent(), 85);
        let p = ImagePolicy {
            high: 85,
            low: 80,
            min_age: Duration::ZERO,
        };
        assert!(u.over(&p));
        assert_eq!(u.to_free(80), 50);
        assert!(
            !Usage {
                capacity: 1000,
                available: 160
            }
            .over(&p)
        );
        // 100 turns image garbage collection off.
        assert!(
            !Usage {
                capacity: 1000,
                available: 0
            }
            .over(&ImagePolicy { high: 100, ..p })
        );
        assert_eq!(
            Usage {
                capacity: 1000,
                available: 900
            }
            .to_free(80),
            0
        );
        assert_eq!(
            Usage {
                capacity: 0,
                available: 0
            }
            .percent(),
            0
        );
    }

    #[test]
    fn unused_old_images_go_least_recently_used_first_until_enough_is_freed() {
        let now = at(10_000);
        let mut images = vec![
            image("recent", 100, 9_990, 0),
            image("lru", 100, 1, 50),
            image("older-detected", 100, 1, 100),
            image("newer-detected", 100, 5, 100),
            Candidate {
                in_use: true,
                ..image("used", 100, 1, 1)
            },
            Candidate {
                pinned: true,
                ..image("pinned", 100, 1, 1)
            },
        ];
        images.push(image("used-now", 100, 1, 10_000));
        let min_age = Duration::from_secs(120);
        let (ids, freed) = select(&images, 150, min_age, now);
        assert_eq!(ids, ["lru", "older-detected"]);
        assert_eq!(freed, 200);
        let (ids, freed) = select(&images, u64::MAX, min_age, now);
        assert_eq!(ids, ["lru", "older-detected", "newer-detected"]);
        assert_eq!(freed, 300);
        // Without a minimum age, the image seen 10 s ago goes too.
        let (ids, _) = select(&images, u64::MAX, Duration::ZERO, now);
        assert_eq!(ids, ["recent", "lru", "older-detected", "newer-detected"]);
        assert_eq!(
            select(&images, 0, Duration::ZERO, now).0,
            Vec::<String>::new()
        );
    }

    #[test]
    fn records_date_images_found_at_start_in_the_past() {
        let mut r = Records::default();
        let in_use: BTreeSet<String> = ["b".to_string()].into();
        let first = r.detect(
            &[("a".into(), 1, false), ("b".into(), 2, true)],
            &in_use,
            at(100),
        );
        assert_eq!(first[0].first_detected, SystemTime::UNIX_EPOCH);
        assert_eq!(first[1].last_used, at(100));
        assert!(first[1].in_use && first[1].pinned);
        let next = r.detect(
            &[("a".into(), 1, false), ("c".into(), 3, false)],
            &BTreeSet::new(),
            at(200),
        );
        assert_eq!(next[0].first_detected, SystemTime::UNIX_EPOCH);
        assert_eq!(next[1].first_detected, at(200));
        assert_eq!(next[1].last_used, SystemTime::UNIX_EPOCH);
        assert!(!r.seen.contains_key("b"));
    }
}
