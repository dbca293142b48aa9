//! Completion indexes of an Indexed Job as ordered intervals ("1,3-5,7"), as in
//! status.completedIndexes and successPolicy rules.

use std::fmt;

/// Sorted, disjoint, non-adjacent closed intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Parse "1,3-5"; entries that do not parse or lie at or past `completions` are dropped.
    pub fn parse(text: &str, completions: i32) -> Intervals {
        let mut found = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) else {
                continue;
            };
            if a < 0 || a > b || a >= completions {
                continue;
            }
            found.push((a, b.min(completions - 1)));
        }
        Intervals::default().merge(&Intervals(found))
    }

    /// Both sets of indexes.
    pub fn merge(&self, other: &Intervals) -> Intervals {
        let mut all: Vec<(i32, i32)> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<(i32, i32)> = Vec::new();
        for (a, b) in all {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Intervals(out)
    }

    pub fn with(&self, indexes: impl IntoIterator<Item = i32>) -> Intervals {
        self.merge(&Intervals(indexes.into_iter().map(|i| (i, i)).collect()))
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn has(&self, i: i32) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&i))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many of `self` are also in `other`.
    pub fn overlap(&self, other: &Intervals) -> i32 {
        let mut n = 0;
        for (a, b) in &self.0 {
            for (c, d) in &other.0 {
                let (lo, hi) = ((*a).max(*c), (*b).min(*d));
                if lo <= hi {
                    n += hi - lo + 1;
                }
            }
        }
        n
    }

    /// The first `count` indexes below `completions` not in `self`.
    pub fn first_missing(&self, count: usize, completions: i32) -> Vec<i32> {
        (0..completions)
            .filter(|i| !self.has(*i))
            .take(count)
            .collect()
    }
}

impl fmt::Display for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(a, b)| match b - a {
                0 => a.to_string(),
                1 => format!("{a},{b}"),
                _ => format!("{a}-{b}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The successPolicy rule met by `succeeded`, as the SuccessCriteriaMet message.
pub fn success_policy_met(
    policy: Option<&k8s_openapi::api::batch::v1::SuccessPolicy>,
    completions: i32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    policy.rules.iter().enumerate().find_map(|(i, rule)| {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(text), count) => {
                let required = Intervals::parse(text, completions);
                let done = required.overlap(succeeded);
                !required.is_empty() && done >= count.unwrap_or(required.total())
            }
            (None, Some(count)) => succeeded.total() >= count,
            (None, None) => false,
        };
        met.then(|| format!("Matched rules at index {i}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{SuccessPolicy, SuccessPolicyRule};

    #[test]
    fn intervals_parse_merge_and_print_as_kubernetes_does() {
        let i = Intervals::parse("0,2-4,9,x,7-8", 9);
        assert_eq!(i.to_string(), "0,2-4,7,8");
        assert_eq!(i.total(), 6);
        let more = i.with([1, 5, 6]);
        assert_eq!(more.to_string(), "0-8");
        assert!(more.has(8) && !more.has(9));
        assert_eq!(Intervals::parse("", 3), Intervals::default());
        assert_eq!(i.first_missing(2, 9), vec![1, 5]);
    }

    #[test]
    fn success_policy_rules() {
        let done = Intervals::parse("0-2,5", 10);
        let rule = |idx: Option<&str>, count: Option<i32>| SuccessPolicy {
            rules: vec![SuccessPolicyRule {
                succeeded_indexes: idx.map(Into::into),
                succeeded_count: count,
            }],
        };
        let met = |p: SuccessPolicy| success_policy_met(Some(&p), 10, &done);
        assert_eq!(
            met(rule(Some("0-2"), None)),
            Some("Matched rules at index 0".into())
        );
        assert_eq!(met(rule(Some("0-3"), None)), None);
        assert!(met(rule(Some("0-9"), Some(4))).is_some());
        assert!(met(rule(Some("4-9"), Some(2))).is_none());
        assert!(met(rule(None, Some(4))).is_some());
        assert!(met(rule(None, Some(5))).is_none());
    }
}
