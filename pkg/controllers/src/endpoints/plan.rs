//! Which EndpointSlices to create, update and delete so that a service's slices hold the
//! endpoints it should have, moving as few endpoints as possible: an endpoint stays in its
//! slice while it lasts, new endpoints fill the fullest slices first, and a slice holds at
//! most 100 endpoints.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::ResourceExt;

pub const MAX_PER_SLICE: usize = 100;

/// The endpoints of one address type and set of ports (sorted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub address_type: String,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// What should be: groups by `group_key`.
pub type Desired = BTreeMap<String, Group>;

/// The key of an address type and set of ports (sorted).
pub fn group_key(address_type: &str, ports: &[EndpointPort]) -> String {
    serde_json::to_string(&(address_type, ports)).unwrap_or_default()
}

#[derive(Debug, Default)]
pub struct Plan {
    /// New slices.
    pub create: Vec<Group>,
    /// Existing slices with new endpoints (their labels are refreshed by the caller).
    pub update: Vec<EndpointSlice>,
    /// Existing slices that changed nothing but may need new labels.
    pub keep: Vec<EndpointSlice>,
    pub delete: Vec<String>,
}

fn ports_of(s: &EndpointSlice) -> Vec<EndpointPort> {
    let mut p = s.ports.clone().unwrap_or_default();
    sort_ports(&mut p);
    p
}

pub fn sort_ports(p: &mut [EndpointPort]) {
    p.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
}

/// Which endpoint this is, whatever its state: its address and pod.
fn identity(e: &Endpoint) -> (Option<String>, Option<String>) {
    let pod = e.target_ref.as_ref().and_then(|r| r.uid.clone());
    (e.addresses.first().cloned(), pod)
}

/// Plan the slices for `desired` given the `existing` ones. With no endpoints at all, one
/// empty placeholder slice of `placeholder_type` stays (or is made).
pub fn plan(existing: Vec<EndpointSlice>, mut desired: Desired, placeholder_type: &str) -> Plan {
    let placeholder = desired.values().all(|g| g.endpoints.is_empty());
    if placeholder {
        let group = Group {
            address_type: placeholder_type.to_string(),
            ..Default::default()
        };
        desired = BTreeMap::from([(group_key(placeholder_type, &[]), group)]);
    }
    let mut by_group: HashMap<String, Vec<EndpointSlice>> = HashMap::new();
    let mut out = Plan::default();
    for s in existing {
        let key = group_key(&s.address_type, &ports_of(&s));
        if desired.contains_key(&key) {
            by_group.entry(key).or_default().push(s);
        } else {
            out.delete.push(s.name_any());
        }
    }
    for (key, group) in desired {
        let slices = by_group.remove(&key).unwrap_or_default();
        if placeholder {
            let mut slices = slices.into_iter();
            match slices.next() {
                Some(mut s) if s.endpoints.as_ref().is_some_and(|e| !e.is_empty()) => {
                    s.endpoints = Some(Vec::new());
                    out.update.push(s);
                }
                Some(s) => out.keep.push(s),
                None => out.create.push(group),
            }
            out.delete.extend(slices.map(|s| s.name_any()));
            continue;
        }
        fill(&mut out, group, slices);
    }
    out
}

/// Place `endpoints` into the group's `slices`, then into new ones.
fn fill(out: &mut Plan, group: Group, slices: Vec<EndpointSlice>) {
    let Group {
        address_type,
        ports,
        endpoints,
    } = group;
    let mut wanted: HashMap<_, Endpoint> =
        endpoints.iter().map(|e| (identity(e), e.clone())).collect();
    // Keep what each slice still should have, updated in place.
    let mut kept: Vec<(EndpointSlice, bool)> = slices
        .into_iter()
        .map(|mut s| {
            let before = s.endpoints.clone().unwrap_or_default();
            let after: Vec<Endpoint> = before
                .iter()
                .filter_map(|e| wanted.remove(&identity(e)))
                .collect();
            let changed = after != before;
            s.endpoints = Some(after);
            (s, changed)
        })
        .collect();
    // New endpoints (in their given order) go to the fullest slices with room.
    let mut new: Vec<Endpoint> = endpoints
        .into_iter()
        .filter(|e| wanted.remove(&identity(e)).is_some())
        .collect();
    kept.sort_by_key(|(s, _)| std::cmp::Reverse(s.endpoints.as_ref().map_or(0, Vec::len)));
    for (s, changed) in kept.iter_mut() {
        let list = s.endpoints.get_or_insert_with(Vec::new);
        let room = MAX_PER_SLICE.saturating_sub(list.len()).min(new.len());
        if room > 0 {
            list.extend(new.drain(..room));
            *changed = true;
        }
    }
    for (s, changed) in kept {
        if s.endpoints.as_ref().is_none_or(Vec::is_empty) {
            out.delete.push(s.name_any());
        } else if changed {
            out.update.push(s);
        } else {
            out.keep.push(s);
        }
    }
    while !new.is_empty() {
        let chunk: Vec<Endpoint> = new.drain(..MAX_PER_SLICE.min(new.len())).collect();
        out.create.push(Group {
            address_type: address_type.clone(),
            ports: ports.clone(),
            endpoints: chunk,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ep(i: usize) -> Endpoint {
        Endpoint {
            addresses: vec![format!("10.42.{}.{}", i / 250, i % 250)],
            ..Default::default()
        }
    }

    fn port() -> Vec<EndpointPort> {
        vec![EndpointPort {
            name: Some(String::new()),
            port: Some(80),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]
    }

    fn slice(name: &str, eps: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(eps),
            ports: Some(port()),
        }
    }

    fn want(eps: Vec<Endpoint>) -> Desired {
        let group = Group {
            address_type: "IPv4".into(),
            ports: port(),
            endpoints: eps,
        };
        BTreeMap::from([(group_key("IPv4", &port()), group)])
    }

    #[test]
    fn at_most_a_hundred_endpoints_per_slice() {
        let p = plan(vec![], want((0..250).map(ep).collect()), "IPv4");
        let sizes: Vec<usize> = p.create.iter().map(|c| c.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn endpoints_stay_put_and_new_ones_fill_the_fullest_slice() {
        let existing = vec![
            slice("a", (0..10).map(ep).collect()),
            slice("b", (10..90).map(ep).collect()),
        ];
        // 0..5 go away, 90..120 come.
        let p = plan(existing, want((5..120).map(ep).collect()), "IPv4");
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        let b = p.update.iter().find(|s| s.name_any() == "b").unwrap();
        assert_eq!(b.endpoints.as_ref().unwrap().len(), 100);
        let a = p.update.iter().find(|s| s.name_any() == "a").unwrap();
        assert_eq!(a.endpoints.as_ref().unwrap().len(), 15);
    }

    #[test]
    fn unchanged_slices_are_kept_and_emptied_ones_deleted() {
        let existing = vec![slice("a", vec![ep(1)]), slice("b", vec![ep(2)])];
        let p = plan(existing, want(vec![ep(1)]), "IPv4");
        assert_eq!(p.keep.len(), 1);
        assert_eq!(p.delete, vec!["b".to_string()]);
    }

    #[test]
    fn no_endpoints_leave_one_placeholder() {
        let p = plan(vec![], want(vec![]), "IPv4");
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].ports.is_empty() && p.create[0].endpoints.is_empty());
        let p = plan(vec![slice("a", vec![ep(1)])], BTreeMap::new(), "IPv4");
        assert_eq!((p.create.len(), p.delete.len()), (1, 1));
    }
}
