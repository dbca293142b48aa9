//! The eviction signals kubelet observes and which hard thresholds they meet:
//! memory.available (capacity minus the working set, from /proc/meminfo: used memory less
//! inactive file pages), nodefs.available and nodefs.inodesFree (statvfs of the data
//! dir), imagefs.available and imagefs.inodesFree (statvfs of the image store) and
//! pid.available (pid_max minus the processes running).

use std::path::Path;

use crate::kubelet_args::{Eviction, Threshold};
use crate::machine;

/// An eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

/// Every signal, in the order kubelet reclaims them (memory first).
pub const ALL: [Signal; 6] = [
    Signal::MemoryAvailable,
    Signal::NodeFsAvailable,
    Signal::NodeFsInodesFree,
    Signal::ImageFsAvailable,
    Signal::ImageFsInodesFree,
    Signal::PidAvailable,
];

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource kubelet reclaims for it (and names in eviction messages).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition it sets.
    pub fn condition(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "MemoryPressure",
            Signal::PidAvailable => "PIDPressure",
            _ => "DiskPressure",
        }
    }

    /// Whether node-level garbage collection can relieve it.
    pub fn is_disk(self) -> bool {
        self.condition() == "DiskPressure"
    }

    /// Its hard threshold, if it has one.
    pub fn threshold(self, e: &Eviction) -> Option<Threshold> {
        match self {
            Signal::MemoryAvailable => e.memory_available,
            Signal::NodeFsAvailable => e.nodefs_available,
            Signal::NodeFsInodesFree => e.nodefs_inodes_free,
            Signal::ImageFsAvailable => e.imagefs_available,
            Signal::ImageFsInodesFree => e.imagefs_inodes_free,
            Signal::PidAvailable => e.pid_available,
        }
    }
}

/// One signal's value now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub signal: Signal,
    pub available: u64,
    pub capacity: u64,
}

/// A hard threshold met: the signal, the threshold's amount and what is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Met {
    pub signal: Signal,
    pub threshold: u64,
    pub available: u64,
}

/// Observe every signal (those that cannot be read are left out).
pub fn observe(data_dir: &Path, image_dir: &Path) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut push = |signal, available, capacity| {
        out.push(Observation {
            signal,
            available,
            capacity,
        })
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(m) = crate::server::host::memory(&meminfo) {
        push(Signal::MemoryAvailable, m.available, m.capacity);
    }
    for (dir, space, inodes) in [
        (data_dir, Signal::NodeFsAvailable, Signal::NodeFsInodesFree),
        (
            image_dir,
            Signal::ImageFsAvailable,
            Signal::ImageFsInodesFree,
        ),
    ] {
        if let Ok(fs) = machine::fs_stats(dir) {
            push(space, fs.available, fs.capacity);
            push(inodes, fs.inodes_free, fs.inodes);
        }
    }
    if let (Some(max), Some(running)) = crate::server::host::rlimit() {
        let max = u64::try_from(max).unwrap_or(0);
        let running = u64::try_from(running).unwrap_or(0);
        push(Signal::PidAvailable, max.saturating_sub(running), max);
    }
    out
}

/// The hard thresholds `observations` meet, memory first.
pub fn met(eviction: &Eviction, observations: &[Observation]) -> Vec<Met> {
    ALL.iter()
        .filter_map(|&signal| {
            let t = signal.threshold(eviction)?;
            let o = observations.iter().find(|o| o.signal == signal)?;
            let threshold = t.of(o.capacity);
            (o.capacity > 0 && o.available < threshold).then_some(Met {
                signal,
                threshold,
                available: o.available,
            })
        })
        .collect()
}

/// The node conditions the thresholds met set ("MemoryPressure", ...), each once.
pub fn conditions(met: &[Met]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for m in met {
        if !out.contains(&m.signal.condition()) {
            out.push(m.signal.condition());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_met_below_their_amount() {
        let e = crate::kubelet_args::parse_eviction(
            "memory.available<100Mi,nodefs.available<10%,pid.available<5%",
        )
        .unwrap();
        let obs = |signal, available, capacity| Observation {
            signal,
            available,
            capacity,
        };
        let observed = [
            obs(Signal::MemoryAvailable, 200 << 20, 1 << 30),
            obs(Signal::NodeFsAvailable, 5, 100),
            obs(Signal::ImageFsAvailable, 0, 100),
            obs(Signal::PidAvailable, 4, 100),
        ];
        let m = met(&e, &observed);
        assert_eq!(
            m.iter().map(|m| m.signal).collect::<Vec<_>>(),
            [Signal::NodeFsAvailable, Signal::PidAvailable]
        );
        assert_eq!((m[0].threshold, m[0].available), (10, 5));
        assert_eq!(conditions(&m), ["DiskPressure", "PIDPressure"]);
        assert_eq!(Signal::ImageFsAvailable.resource(), "ephemeral-storage");
        let here = observe(Path::new("/"), Path::new("/"));
        assert!(
            here.iter()
                .any(|o| o.signal == Signal::NodeFsAvailable && o.capacity > 0)
        );
    }
}
