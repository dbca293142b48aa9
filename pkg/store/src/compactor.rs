//! Background compaction by age: every interval, note the current revision; compact to the
//! newest noted revision that is at least `retention` old. History younger than `retention`
//! is always kept.

use std::collections::VecDeque;
use std::time::Instant;

use crate::local::Handle;
use crate::options::StoreOptions;

/// Pick the revision to compact to from `(time, revision)` samples, dropping samples that
/// are no longer needed.
pub(crate) fn due(
    samples: &mut VecDeque<(Instant, i64)>,
    now: Instant,
    retention: std::time::Duration,
) -> Option<i64> {
    let mut target = None;
    while let Some(&(t, rev)) = samples.front() {
        if now.duration_since(t) < retention {
            break;
        }
        target = Some(rev);
        samples.pop_front();
    }
    target
}

pub(crate) async fn run(handle: Handle, options: StoreOptions) {
    let mut samples = VecDeque::new();
    let mut tick = tokio::time::interval(options.compaction_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        samples.push_back((now, handle.current()));
        if let Some(target) = due(&mut samples, now, options.retention)
            && let Err(e) = handle.compact(target).await
        {
            tracing::warn!(error = %e, revision = target, "background compaction failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn compacts_only_history_older_than_retention() {
        let t0 = Instant::now();
        let mut s: VecDeque<_> = [
            (t0, 10),
            (t0 + Duration::from_secs(60), 20),
            (t0 + Duration::from_secs(120), 30),
        ]
        .into();
        let retention = Duration::from_secs(300);
        assert_eq!(due(&mut s, t0 + Duration::from_secs(299), retention), None);
        assert_eq!(s.len(), 3);
        assert_eq!(
            due(&mut s, t0 + Duration::from_secs(370), retention),
            Some(20)
        );
        assert_eq!(s.len(), 1);
    }
}
