//! Service ports: the cluster-wide port a load balancer serves an app's port on (marathon-lb's
//! frontend port). One mechanism for both places Marathon keeps them: `portDefinitions[].port`
//! of host-networked apps and `container.portMappings[].servicePort` of BRIDGE/USER containers
//! (see [`App::service_ports`]).
//!
//! As Marathon's `AssignDynamicServiceLogic`: every 0 gets a port from [`RANGE`] (its
//! `--local_port_min`/`--local_port_max` defaults) that no other app uses, the app's previous
//! ports first (so re-posting zeros keeps them), running out is an error. A fixed port another
//! app uses is refused with a 409 as Marathon 0.8-0.13 did (its
//! `ModelValidation.checkAppConflicts`); Marathon 1.x dropped that check, which lets two apps
//! claim one load-balancer frontend.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use cairn_marathon::App;

use crate::model::AppEntry;

/// Where assigned service ports come from (inclusive, as Marathon's `Range.inclusive`).
pub const RANGE: RangeInclusive<i64> = 10000..=20000;

/// Why an app's service ports cannot be what it asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServicePortError {
    /// Fixed ports other apps hold: (port, the app holding it).
    #[error("{}", conflicts_message(.0))]
    Conflict(Vec<(i64, String)>),
    /// Every port of [`RANGE`] is taken.
    #[error("All ports in the range [{}-{}) are already in use", RANGE.start(), RANGE.end())]
    Exhausted,
}

fn conflicts_message(c: &[(i64, String)]) -> String {
    c.iter()
        .map(|(port, app)| {
            format!("Requested service port {port} conflicts with a service port in app {app}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Adds the service ports `app` holds to `used` (the first holder of a port stays).
fn hold(used: &mut BTreeMap<i64, String>, app: &App) {
    for p in app.service_ports().into_iter().filter(|p| *p != 0) {
        used.entry(p).or_insert_with(|| app.id.clone());
    }
}

/// The service ports held by apps other than `except`, with the app holding each.
pub fn used_service_ports(
    apps: &imbl::OrdMap<String, AppEntry>,
    except: &str,
) -> BTreeMap<i64, String> {
    let mut used = BTreeMap::new();
    for e in apps.values().filter(|e| e.app.id != except) {
        hold(&mut used, &e.app);
    }
    used
}

/// Gives every service port 0 of `app` a free one and refuses fixed ports held by others.
/// `previous` is the app's current version: its ports are reused first, and a fixed port it
/// already had is never a conflict (so data from before this check keeps working).
pub fn assign(
    app: &mut App,
    previous: Option<&App>,
    used: &BTreeMap<i64, String>,
) -> Result<(), ServicePortError> {
    let mut ports = app.service_ports();
    let had: BTreeSet<i64> = previous
        .map(App::service_ports)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| *p != 0)
        .collect();
    let conflicts: Vec<(i64, String)> = ports
        .iter()
        .filter(|p| **p != 0 && !had.contains(p))
        .filter_map(|p| used.get(p).map(|owner| (*p, owner.clone())))
        .collect();
    if !conflicts.is_empty() {
        return Err(ServicePortError::Conflict(conflicts));
    }
    if !ports.contains(&0) {
        return Ok(());
    }
    let mut taken: BTreeSet<i64> = used.keys().copied().collect();
    taken.extend(ports.iter().copied().filter(|p| *p != 0));
    let reuse: Vec<i64> = had
        .iter()
        .copied()
        .filter(|p| RANGE.contains(p) && !taken.contains(p))
        .collect();
    // Previous ports in their old order, so a re-post of zeros gets the same ports back.
    let reuse: Vec<i64> = previous
        .map(App::service_ports)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| reuse.contains(p))
        .collect();
    let mut free = reuse
        .into_iter()
        .chain(RANGE.filter(|p| !taken.contains(p)));
    for p in ports.iter_mut().filter(|p| **p == 0) {
        *p = free.next().ok_or(ServicePortError::Exhausted)?;
    }
    app.set_service_ports(&ports);
    Ok(())
}

/// Runs [`assign`] over several apps as one change (a bulk update): each sees the ports the
/// ones before it took. `apps` pairs each new definition with its current one.
pub fn assign_all(
    apps: &mut [(App, Option<App>)],
    stored: &imbl::OrdMap<String, AppEntry>,
) -> Result<(), ServicePortError> {
    let ids: BTreeSet<&str> = apps.iter().map(|(a, _)| a.id.as_str()).collect();
    let mut used: BTreeMap<i64, String> = BTreeMap::new();
    for e in stored.values().filter(|e| !ids.contains(e.app.id.as_str())) {
        hold(&mut used, &e.app);
    }
    for (app, previous) in apps.iter_mut() {
        assign(app, previous.as_ref(), &used)?;
        hold(&mut used, app);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn app(v: Value) -> App {
        cairn_marathon::parse_app(v, None).unwrap()
    }

    fn bridge(id: &str, service_ports: &[u16]) -> App {
        let mappings: Vec<Value> = service_ports
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"containerPort": 80 + i, "servicePort": p}))
            .collect();
        app(json!({"id": id, "networks": [{"mode": "container/bridge"}],
            "container": {"type": "DOCKER", "docker": {"image": "web"}, "portMappings": mappings}}))
    }

    fn host(id: &str, ports: &[i64]) -> App {
        app(json!({"id": id, "cmd": "x", "ports": ports}))
    }

    fn entries(apps: &[App]) -> imbl::OrdMap<String, AppEntry> {
        apps.iter()
            .map(|a| {
                (
                    a.id.clone(),
                    AppEntry {
                        app: a.clone(),
                        versions: vec![],
                        failures: 0,
                        delay_until_ms: 0,
                        last_failure: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn assignment_table() {
        struct Case {
            what: &'static str,
            others: Vec<App>,
            previous: Option<App>,
            new: App,
            want: Result<Vec<i64>, ServicePortError>,
        }
        let cases = vec![
            Case {
                what: "host-networked zeros take the lowest free ports",
                others: vec![host("/o", &[10000, 10002])],
                previous: None,
                new: host("/a", &[0, 0]),
                want: Ok(vec![10001, 10003]),
            },
            Case {
                what: "BRIDGE mappings share the pool with port definitions",
                others: vec![host("/o", &[10000])],
                previous: None,
                new: bridge("/a", &[0, 0]),
                want: Ok(vec![10001, 10002]),
            },
            Case {
                what: "a fixed servicePort is honoured",
                others: vec![],
                previous: None,
                new: bridge("/a", &[15000, 0]),
                want: Ok(vec![15000, 10000]),
            },
            Case {
                what: "a fixed port held by another app is refused",
                others: vec![bridge("/o", &[15000])],
                previous: None,
                new: host("/a", &[15000]),
                want: Err(ServicePortError::Conflict(vec![(15000, "/o".into())])),
            },
            Case {
                what: "re-posting zeros keeps the previous ports",
                others: vec![host("/o", &[10000])],
                previous: Some(bridge("/a", &[10005, 10001])),
                new: bridge("/a", &[0, 0]),
                want: Ok(vec![10005, 10001]),
            },
            Case {
                what: "a port the app already had is not a conflict",
                others: vec![host("/o", &[12000])],
                previous: Some(host("/a", &[12000])),
                new: host("/a", &[12000]),
                want: Ok(vec![12000]),
            },
            Case {
                what: "moving from port definitions to mappings keeps the ports",
                others: vec![],
                previous: Some(host("/a", &[10007])),
                new: bridge("/a", &[0]),
                want: Ok(vec![10007]),
            },
        ];
        for c in cases {
            let mut all = c.others.clone();
            all.extend(c.previous.clone());
            let used = used_service_ports(&entries(&all), &c.new.id);
            let mut new = c.new.clone();
            let got = assign(&mut new, c.previous.as_ref(), &used).map(|()| new.service_ports());
            assert_eq!(got, c.want, "{}", c.what);
        }
    }

    #[test]
    fn assigned_mapping_ports_are_written_into_the_container() {
        let mut a = bridge("/a", &[0]);
        assign(&mut a, None, &BTreeMap::new()).unwrap();
        let out = serde_json::to_value(&a).unwrap();
        assert_eq!(out["container"]["portMappings"][0]["servicePort"], 10000);
        assert!(out.get("portDefinitions").is_none());
    }

    #[test]
    fn running_out_is_an_error_and_messages_are_marathons() {
        let mut used: BTreeMap<i64, String> = RANGE.map(|p| (p, "/o".to_string())).collect();
        used.remove(&20000);
        let mut a = host("/a", &[0]);
        assign(&mut a, None, &used).unwrap();
        assert_eq!(a.service_ports(), [20000]);
        used.insert(20000, "/o".into());
        let mut b = host("/b", &[0]);
        let err = assign(&mut b, None, &used).unwrap_err();
        assert_eq!(
            err.to_string(),
            "All ports in the range [10000-20000) are already in use"
        );
        let c = ServicePortError::Conflict(vec![(3000, "/demo".into()), (3001, "/demo".into())]);
        assert_eq!(
            c.to_string(),
            "Requested service port 3000 conflicts with a service port in app /demo,Requested service port 3001 conflicts with a service port in app /demo"
        );
    }

    #[test]
    fn a_bulk_change_sees_its_own_ports() {
        let stored = entries(&[host("/a", &[10000])]);
        let mut apps = vec![
            (host("/a", &[0]), Some(host("/a", &[10000]))),
            (bridge("/b", &[0]), None),
        ];
        assign_all(&mut apps, &stored).unwrap();
        assert_eq!(apps[0].0.service_ports(), [10000]);
        assert_eq!(apps[1].0.service_ports(), [10001]);
        let mut clash = vec![(host("/c", &[15000]), None), (bridge("/d", &[15000]), None)];
        assert!(matches!(
            assign_all(&mut clash, &imbl::OrdMap::new()),
            Err(ServicePortError::Conflict(_))
        ));
    }
}
