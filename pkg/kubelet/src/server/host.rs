//! The node's own counters, as cAdvisor reads them for the root container: cpu time of the
//! root cgroup (cgroup v1 cpuacct, v2 cpu.stat, else /proc/stat), memory from
//! /proc/meminfo (working set = used less inactive file pages), and the process limits.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// Cpu time the whole machine used, in nanoseconds.
pub fn cpu_nanoseconds() -> Option<u64> {
    if let Ok(v1) = std::fs::read_to_string("/sys/fs/cgroup/cpuacct/cpuacct.usage")
        && let Ok(n) = v1.trim().parse()
    {
        return Some(n);
    }
    if let Ok(v2) = std::fs::read_to_string("/sys/fs/cgroup/cpu.stat")
        && let Some(usec) = stat_field(&v2, "usage_usec")
    {
        return Some(usec * 1000);
    }
    proc_stat_nanoseconds(&std::fs::read_to_string("/proc/stat").ok()?, clock_ticks())
}

fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Busy time (all but idle and iowait) of the `cpu` line of /proc/stat.
pub fn proc_stat_nanoseconds(text: &str, ticks: u64) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| *v)
        .sum();
    Some(busy.saturating_mul(1_000_000_000) / ticks)
}

/// The machine's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub capacity: u64,
    pub usage: u64,
    pub working_set: u64,
    pub available: u64,
}

/// Memory as /proc/meminfo (`text`) tells it.
pub fn memory(text: &str) -> Option<Memory> {
    let kb = |k: &str| crate::machine::meminfo(text, k);
    let capacity = kb("MemTotal")?;
    let usage = capacity.saturating_sub(kb("MemFree")?);
    let working_set = usage.saturating_sub(kb("Inactive(file)").unwrap_or(0));
    Some(Memory {
        capacity,
        usage,
        working_set,
        available: capacity.saturating_sub(working_set),
    })
}

/// (pid_max, processes now).
pub fn rlimit() -> (Option<i64>, Option<i64>) {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let cur = std::fs::read_dir("/proc").ok().map(|d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count() as i64
    });
    (max, cur)
}

/// Bytes the files under `dir` take (0 when it is not there).
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// The node's cpu rate: nanocores between two readings at least a second apart (the last
/// rate is kept between them).
#[derive(Default)]
pub struct CpuRate(Mutex<Option<(Instant, u64, Option<u64>)>>);

impl CpuRate {
    /// Record `cpu` (cumulative nanoseconds) now; the rate since the previous reading.
    pub fn observe(&self, cpu: u64) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((at, _, rate)) if now.duration_since(at).as_secs_f64() < 1.0 => rate,
            Some((at, before, _)) => {
                let secs = now.duration_since(at).as_secs_f64();
                let rate = (cpu.saturating_sub(before) as f64 / secs) as u64;
                *last = Some((now, cpu, Some(rate)));
                Some(rate)
            }
            None => {
                *last = Some((now, cpu, None));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counters_are_read_as_cadvisor_reads_them() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        // 160 busy ticks at 100 Hz: 1.6 s.
        assert_eq!(proc_stat_nanoseconds(stat, 100), Some(1_600_000_000));
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\n\
                       Inactive(file):  100 kB\n";
        let m = memory(meminfo).unwrap();
        assert_eq!(m.capacity, 1000 * 1024);
        assert_eq!(m.usage, 800 * 1024);
        assert_eq!(m.working_set, 700 * 1024);
        assert_eq!(m.available, 300 * 1024);
        assert_eq!(
            stat_field("usage_usec 42\nuser_usec 1\n", "usage_usec"),
            Some(42)
        );
        let r = CpuRate::default();
        assert_eq!(r.observe(5), None);
        // Too soon for a rate.
        assert_eq!(r.observe(10), None);
    }
}
