//! Placement: which agent runs a new task. Each agent's unused resources form its [`Offer`];
//! tasks are bin-packed (the busiest agent that fits wins, so whole agents stay free for big
//! tasks and for draining) while Marathon's constraints and host-port needs are honoured.
//!
//! This is pure computation over a slice of offers, shared by offerd's scheduler and the
//! scheduler benchmark. For speed with thousands of agents, everything a constraint needs is
//! resolved once per app ([`Placer::new`]), so judging one agent for one task is a few array
//! reads and float compares.

use std::collections::{BTreeSet, HashMap};

use cairn_marathon::{App, Attributes, Constraint, Operator, PortRange};
use regex::Regex;

/// One agent's unused resources and what already runs there.
#[derive(Clone, Debug)]
pub struct Offer {
    pub node: String,
    pub attributes: Attributes,
    pub total_cpus: f64,
    pub total_mem: f64,
    pub free_cpus: f64,
    pub free_mem: f64,
    pub free_disk: f64,
    pub port_ranges: Vec<PortRange>,
    pub used_ports: BTreeSet<u16>,
    /// Active tasks per app id on this agent.
    pub app_counts: HashMap<String, u32>,
}

impl Offer {
    pub fn free_port_count(&self) -> usize {
        let total: usize = self.port_ranges.iter().map(PortRange::len).sum();
        total.saturating_sub(self.used_ports.len())
    }

    /// How full the agent is, 0..=1 (mean of cpu and memory use).
    pub fn load(&self) -> f64 {
        let part = |free: f64, total: f64| if total > 0.0 { 1.0 - free / total } else { 1.0 };
        (part(self.free_cpus, self.total_cpus) + part(self.free_mem, self.total_mem)) / 2.0
    }

    /// Whether every fixed (non-zero) port of `required` is in the agent's ranges and free.
    fn has_fixed(&self, required: &[u16]) -> bool {
        required.iter().filter(|p| **p != 0).all(|p| {
            self.port_ranges.iter().any(|r| r.contains(*p)) && !self.used_ports.contains(p)
        })
    }

    /// Takes `n` free host ports: where `required` gives a port (requirePorts, or a port
    /// mapping's fixed `hostPort`) that one, elsewhere (0, or no `required` at all) the lowest
    /// free ones; in the order of the demand.
    fn take_ports(&mut self, required: &[u16], n: usize) -> Option<Vec<u16>> {
        if !self.has_fixed(required) {
            return None;
        }
        let fixed: BTreeSet<u16> = required.iter().copied().filter(|p| *p != 0).collect();
        if fixed.len() != required.iter().filter(|p| **p != 0).count() {
            // The same host port twice in one task can never be satisfied.
            return None;
        }
        let wanted: Vec<u16> = if required.is_empty() {
            vec![0; n]
        } else {
            required.to_vec()
        };
        let dynamic = wanted.iter().filter(|p| **p == 0).count();
        let mut free = Vec::with_capacity(dynamic);
        'ranges: for r in &self.port_ranges {
            for p in r.begin..=r.end {
                if free.len() == dynamic {
                    break 'ranges;
                }
                if !self.used_ports.contains(&p) && !fixed.contains(&p) {
                    free.push(p);
                }
            }
        }
        if free.len() < dynamic {
            return None;
        }
        let mut free = free.into_iter();
        let out: Vec<u16> = wanted
            .iter()
            .map(|p| {
                if *p == 0 {
                    free.next().unwrap_or(0)
                } else {
                    *p
                }
            })
            .collect();
        self.used_ports.extend(out.iter().copied());
        Some(out)
    }
}

/// What one task of an app needs.
#[derive(Clone, Debug)]
pub struct Demand<'a> {
    pub app_id: &'a str,
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    /// Number of host ports.
    pub ports: usize,
    /// The host port each of the `ports` must be when the app fixes any (requirePorts, or port
    /// mappings with a `hostPort`), 0 where any free port will do; empty when none is fixed.
    pub required_ports: Vec<u16>,
    pub constraints: &'a [Constraint],
}

impl<'a> Demand<'a> {
    /// What one task of `app` needs: its resources, its host ports (the fixed ones, when the app
    /// fixes any: requirePorts, or port mappings with a hostPort) and its constraints.
    pub fn of(app: &'a App) -> Demand<'a> {
        let host_ports = app.host_port_demand();
        let required_ports = if host_ports.iter().any(|p| *p != 0) {
            host_ports
        } else {
            Vec::new()
        };
        Demand {
            app_id: &app.id,
            cpus: app.cpus,
            mem: app.mem,
            disk: app.disk,
            ports: app.port_count(),
            required_ports,
            constraints: &app.constraints,
        }
    }
}

/// Where one task went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub offer: usize,
    pub ports: Vec<u16>,
}

/// A constraint resolved against the offers: each agent's value of the field as a small integer.
struct Resolved {
    op: Operator,
    /// Value id per offer; `None` when the agent lacks the attribute.
    value_of: Vec<Option<u32>>,
    /// This app's tasks per value id.
    count_per_value: Vec<u32>,
    /// For LIKE/UNLIKE/IS/CLUSTER(with value): whether each value id matches.
    matches: Vec<bool>,
    /// CLUSTER without a value: the value the app's tasks already use, if any.
    cluster_value: Option<u32>,
    limit: u32,
}

/// Places the tasks of one app, keeping its per-agent and per-value counts up to date.
pub struct Placer<'a> {
    demand: Demand<'a>,
    resolved: Vec<Resolved>,
    /// This app's tasks per offer.
    app_count: Vec<u32>,
}

impl<'a> Placer<'a> {
    pub fn new(offers: &[Offer], demand: Demand<'a>) -> Result<Self, String> {
        let app_count: Vec<u32> = offers
            .iter()
            .map(|o| o.app_counts.get(demand.app_id).copied().unwrap_or(0))
            .collect();
        let mut resolved = Vec::with_capacity(demand.constraints.len());
        for c in demand.constraints {
            let mut ids: HashMap<&str, u32> = HashMap::new();
            let mut names: Vec<&str> = Vec::new();
            let value_of: Vec<Option<u32>> = offers
                .iter()
                .map(|o| {
                    let v = if c.is_hostname() {
                        Some(o.node.as_str())
                    } else {
                        o.attributes.get(&c.field).map(String::as_str)
                    }?;
                    Some(*ids.entry(v).or_insert_with(|| {
                        names.push(v);
                        (names.len() - 1) as u32
                    }))
                })
                .collect();
            let mut count_per_value = vec![0u32; names.len()];
            for (i, v) in value_of.iter().enumerate() {
                if let Some(v) = v {
                    count_per_value[*v as usize] += app_count[i];
                }
            }
            let value = c.value.as_deref().unwrap_or("");
            let matches: Vec<bool> = match c.operator {
                Operator::Like | Operator::Unlike => {
                    let re = Regex::new(&format!("^(?:{value})$"))
                        .map_err(|e| format!("constraint {:?}: {e}", c.field))?;
                    names.iter().map(|n| re.is_match(n)).collect()
                }
                Operator::Is | Operator::Cluster if !value.is_empty() => {
                    names.iter().map(|n| *n == value).collect()
                }
                _ => vec![true; names.len()],
            };
            let cluster_value = if c.operator == Operator::Cluster && value.is_empty() {
                count_per_value
                    .iter()
                    .position(|n| *n > 0)
                    .map(|i| i as u32)
            } else {
                None
            };
            let limit = match c.operator {
                Operator::MaxPer => value.parse().unwrap_or(1),
                Operator::GroupBy => value.parse().unwrap_or(0),
                _ => 0,
            };
            resolved.push(Resolved {
                op: c.operator,
                value_of,
                count_per_value,
                matches,
                cluster_value,
                limit,
            });
        }
        Ok(Placer {
            demand,
            resolved,
            app_count,
        })
    }

    fn fits(&self, o: &Offer) -> bool {
        let d = &self.demand;
        o.free_cpus + 1e-9 >= d.cpus
            && o.free_mem + 1e-9 >= d.mem
            && o.free_disk + 1e-9 >= d.disk
            && o.free_port_count() >= d.ports
            && o.has_fixed(&d.required_ports)
    }

    /// Whether the constraints allow one more task on offer `i`.
    fn allowed(&self, i: usize) -> bool {
        self.resolved.iter().all(|r| {
            let Some(v) = r.value_of[i] else {
                // An agent without the attribute is refused by every operator but UNLIKE.
                return r.op == Operator::Unlike;
            };
            let v = v as usize;
            match r.op {
                Operator::Unique => r.count_per_value[v] == 0,
                Operator::MaxPer => r.count_per_value[v] < r.limit,
                Operator::Like | Operator::Is => r.matches[v],
                Operator::Unlike => !r.matches[v],
                Operator::Cluster => match r.cluster_value {
                    Some(c) => c as usize == v,
                    None => r.matches[v],
                },
                Operator::GroupBy => true,
            }
        })
    }

    /// GROUP_BY spreads evenly: a value with fewer of this app's tasks goes first.
    fn spread_rank(&self, i: usize) -> u32 {
        self.resolved
            .iter()
            .filter(|r| r.op == Operator::GroupBy)
            .map(|r| r.value_of[i].map_or(u32::MAX, |v| r.count_per_value[v as usize]))
            .sum()
    }

    /// Places one task: the busiest allowed agent that fits (GROUP_BY's least used value
    /// first). `Err` explains why nothing fits.
    pub fn place_one(&mut self, offers: &mut [Offer]) -> Result<Placement, String> {
        let mut best: Option<(usize, u32, f64)> = None;
        let (mut fit, mut allowed) = (0usize, 0usize);
        let has_group_by = self.resolved.iter().any(|r| r.op == Operator::GroupBy);
        for (i, o) in offers.iter().enumerate() {
            if !self.fits(o) {
                continue;
            }
            fit += 1;
            if !self.allowed(i) {
                continue;
            }
            allowed += 1;
            let rank = if has_group_by { self.spread_rank(i) } else { 0 };
            let load = o.load();
            let better = match best {
                None => true,
                Some((_, r, l)) => rank < r || (rank == r && load > l),
            };
            if better {
                best = Some((i, rank, load));
            }
        }
        let Some((i, _, _)) = best else {
            return Err(self.why_not(offers, fit, allowed));
        };
        let d = &self.demand;
        let o = &mut offers[i];
        let ports = o.take_ports(&d.required_ports, d.ports).ok_or_else(|| {
            format!(
                "required host ports {:?} are not free on any agent",
                d.required_ports
            )
        })?;
        o.free_cpus -= d.cpus;
        o.free_mem -= d.mem;
        o.free_disk -= d.disk;
        *o.app_counts.entry(d.app_id.to_string()).or_insert(0) += 1;
        self.app_count[i] += 1;
        for r in &mut self.resolved {
            if let Some(v) = r.value_of[i] {
                r.count_per_value[v as usize] += 1;
                if r.op == Operator::Cluster && r.cluster_value.is_none() {
                    r.cluster_value = Some(v);
                }
            }
        }
        Ok(Placement { offer: i, ports })
    }

    fn why_not(&self, offers: &[Offer], fit: usize, allowed: usize) -> String {
        let d = &self.demand;
        if offers.is_empty() {
            return "no agents are registered".into();
        }
        if fit == 0 {
            let max = |f: fn(&Offer) -> f64| offers.iter().map(f).fold(0.0, f64::max);
            let mut short = Vec::new();
            if max(|o| o.free_cpus) + 1e-9 < d.cpus {
                short.push(format!(
                    "cpus {} (most free: {:.2})",
                    d.cpus,
                    max(|o| o.free_cpus)
                ));
            }
            if max(|o| o.free_mem) + 1e-9 < d.mem {
                short.push(format!(
                    "mem {} (most free: {})",
                    d.mem,
                    max(|o| o.free_mem)
                ));
            }
            if max(|o| o.free_disk) + 1e-9 < d.disk {
                short.push(format!(
                    "disk {} (most free: {})",
                    d.disk,
                    max(|o| o.free_disk)
                ));
            }
            let ports = offers.iter().map(Offer::free_port_count).max().unwrap_or(0);
            if ports < d.ports {
                short.push(format!("{} ports (most free: {ports})", d.ports));
            }
            let fixed: Vec<u16> = d
                .required_ports
                .iter()
                .copied()
                .filter(|p| *p != 0)
                .collect();
            if !fixed.is_empty() && !offers.iter().any(|o| o.has_fixed(&d.required_ports)) {
                short.push(format!("host ports {fixed:?} (no agent offers them free)"));
            }
            if short.is_empty() {
                short.push(format!(
                    "cpus {}, mem {}, disk {} together",
                    d.cpus, d.mem, d.disk
                ));
            }
            return format!(
                "no agent has enough free resources: needs {} ({} agents)",
                short.join(", "),
                offers.len()
            );
        }
        if allowed == 0 {
            let cs: Vec<String> = d.constraints.iter().map(ToString::to_string).collect();
            return format!(
                "constraints [{}] are not met by any of the {fit} agents with enough resources",
                cs.join(", ")
            );
        }
        "no agent fits".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(node: &str, cpus: f64, attrs: &[(&str, &str)]) -> Offer {
        Offer {
            node: node.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            total_cpus: cpus,
            total_mem: 1024.0,
            free_cpus: cpus,
            free_mem: 1024.0,
            free_disk: 1000.0,
            port_ranges: vec![PortRange {
                begin: 31000,
                end: 31009,
            }],
            used_ports: BTreeSet::new(),
            app_counts: HashMap::new(),
        }
    }

    fn c(field: &str, op: Operator, value: Option<&str>) -> Constraint {
        Constraint {
            field: field.into(),
            operator: op,
            value: value.map(String::from),
        }
    }

    fn demand<'a>(constraints: &'a [Constraint]) -> Demand<'a> {
        Demand {
            app_id: "/a",
            cpus: 1.0,
            mem: 64.0,
            disk: 0.0,
            ports: 1,
            required_ports: vec![],
            constraints,
        }
    }

    fn place_n(offers: &mut [Offer], cs: &[Constraint], n: usize) -> Vec<Result<usize, String>> {
        let mut p = Placer::new(offers, demand(cs)).unwrap();
        (0..n)
            .map(|_| p.place_one(offers).map(|pl| pl.offer))
            .collect()
    }

    #[test]
    fn bin_packs_onto_the_busiest_agent() {
        let mut offers = vec![offer("a", 4.0, &[]), offer("b", 4.0, &[])];
        offers[1].free_cpus = 3.0;
        let got = place_n(&mut offers, &[], 4);
        assert_eq!(got, vec![Ok(1), Ok(1), Ok(1), Ok(0)]);
        assert_eq!(offers[1].used_ports.len(), 3);
    }

    #[test]
    fn unique_hostname_spreads_and_then_queues() {
        let mut offers = vec![offer("a", 4.0, &[]), offer("b", 4.0, &[])];
        let cs = [c("hostname", Operator::Unique, None)];
        let got = place_n(&mut offers, &cs, 3);
        assert!(got[0].is_ok() && got[1].is_ok());
        assert_ne!(got[0], got[1]);
        let err = got[2].clone().unwrap_err();
        assert!(err.contains("hostname:UNIQUE"), "{err}");
    }

    #[test]
    fn like_unlike_is_and_missing_attributes() {
        let mut offers = vec![
            offer("a", 8.0, &[("rack", "r1")]),
            offer("b", 8.0, &[("rack", "r2")]),
            offer("c", 8.0, &[]),
        ];
        let like = [c("rack", Operator::Like, Some("r[2-9]"))];
        assert!(
            place_n(&mut offers.clone(), &like, 3)
                .iter()
                .all(|r| r == &Ok(1))
        );
        let unlike = [c("rack", Operator::Unlike, Some("r1"))];
        for r in place_n(&mut offers.clone(), &unlike, 4) {
            assert!(matches!(r, Ok(1) | Ok(2)));
        }
        let is = [c("rack", Operator::Is, Some("r1"))];
        assert!(place_n(&mut offers, &is, 2).iter().all(|r| r == &Ok(0)));
    }

    #[test]
    fn group_by_spreads_evenly_and_max_per_caps() {
        let mut offers = vec![
            offer("a", 8.0, &[("zone", "z1")]),
            offer("b", 8.0, &[("zone", "z1")]),
            offer("c", 8.0, &[("zone", "z2")]),
        ];
        let cs = [c("zone", Operator::GroupBy, None)];
        let got = place_n(&mut offers, &cs, 6);
        let z2 = got.iter().filter(|r| **r == Ok(2)).count();
        assert_eq!(z2, 3, "{got:?}");
        let mut offers2 = vec![
            offer("a", 8.0, &[("zone", "z1")]),
            offer("c", 8.0, &[("zone", "z2")]),
        ];
        let cs = [c("zone", Operator::MaxPer, Some("2"))];
        let got = place_n(&mut offers2, &cs, 5);
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 4);
    }

    #[test]
    fn cluster_without_value_sticks_to_the_first_choice() {
        let mut offers = vec![
            offer("a", 2.0, &[("rack", "r1")]),
            offer("b", 8.0, &[("rack", "r2")]),
        ];
        let cs = [c("rack", Operator::Cluster, None)];
        let got = place_n(&mut offers, &cs, 3);
        // Both empty agents tie; the first choice fills up and the third task may not move on.
        assert_eq!(got[0], Ok(0));
        assert_eq!(got[1], Ok(0));
        assert!(
            got[2].clone().unwrap_err().contains("rack:CLUSTER"),
            "{got:?}"
        );
    }

    #[test]
    fn says_what_is_short() {
        let mut offers = vec![offer("a", 0.5, &[])];
        let err = place_n(&mut offers, &[], 1)[0].clone().unwrap_err();
        assert!(err.contains("cpus 1 (most free: 0.50)"), "{err}");
        let mut offers = vec![offer("a", 64.0, &[])];
        let got = place_n(&mut offers, &[], 11);
        assert!(got[10].clone().unwrap_err().contains("ports"));
    }

    #[test]
    fn required_ports_must_be_free() {
        let mut offers = vec![offer("a", 8.0, &[])];
        let d = Demand {
            required_ports: vec![31005],
            ..demand(&[])
        };
        let mut p = Placer::new(&offers, d).unwrap();
        assert_eq!(p.place_one(&mut offers).unwrap().ports, vec![31005]);
        assert!(p.place_one(&mut offers).is_err());
    }

    #[test]
    fn fixed_host_ports_pick_agents_that_offer_them() {
        // The second agent offers 32000-32009; a mapping fixed at 32003 can only go there, and
        // only once; the dynamic port next to it is the lowest other free one.
        let mut offers = vec![offer("a", 8.0, &[]), offer("b", 2.0, &[])];
        offers[1].port_ranges = vec![PortRange {
            begin: 32000,
            end: 32009,
        }];
        offers[1].used_ports.insert(32000);
        let d = Demand {
            ports: 2,
            required_ports: vec![0, 32003],
            ..demand(&[])
        };
        let mut p = Placer::new(&offers, d).unwrap();
        let first = p.place_one(&mut offers).unwrap();
        assert_eq!((first.offer, first.ports), (1, vec![32001, 32003]));
        let err = p.place_one(&mut offers).unwrap_err();
        assert!(err.contains("32003"), "{err}");
        // A port fixed twice in one task never fits.
        let twice = Demand {
            ports: 2,
            required_ports: vec![31001, 31001],
            ..demand(&[])
        };
        let mut offers = vec![offer("a", 8.0, &[])];
        assert!(
            Placer::new(&offers, twice)
                .unwrap()
                .place_one(&mut offers)
                .is_err()
        );
    }
}
