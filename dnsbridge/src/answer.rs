//! Building answers for names under the domain: A/AAAA/ANY/SRV for services and nodes, SOA and
//! NS at the apex, NXDOMAIN or NODATA with the SOA in the authority section otherwise. Pure
//! functions over a [`View`], so every answer shape is unit-testable.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;

use crate::names::Lookup;
use crate::view::{Instance, View};

/// Fixed facts of the zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The domain, lowercase, fully qualified (`consul.`).
    pub domain: Name,
    pub datacenter: String,
    /// TTL of every record (Consul's default is 0: always fresh).
    pub ttl: u32,
    /// Address given for `ns.<domain>` in NS answers.
    pub ns_addr: IpAddr,
}

/// The sections of an answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Zone {
    fn name(&self, prefix: &str) -> Option<Name> {
        Name::from_ascii(prefix)
            .ok()?
            .append_domain(&self.domain)
            .ok()
    }

    fn ns_name(&self) -> Name {
        self.name("ns").unwrap_or_else(|| self.domain.clone())
    }

    /// The zone's SOA (serial = the catalog index, so it changes with the data).
    pub fn soa(&self, serial: u64) -> Record {
        let rname = self
            .name("hostmaster")
            .unwrap_or_else(|| self.domain.clone());
        let soa = SOA::new(
            self.ns_name(),
            rname,
            serial as u32,
            3600,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.domain.clone(), self.ttl, RData::SOA(soa))
    }

    fn address_record(&self, name: Name, addr: IpAddr) -> Record {
        address_record(name, addr, self.ttl)
    }

    /// `<node>.node.<dc>.<domain>`, the SRV target of an instance.
    fn node_target(&self, node: &str) -> Option<Name> {
        self.name(&format!("{node}.node.{}", self.datacenter))
    }

    /// Answers one question about a name under the domain.
    pub fn answer(&self, view: &View, lookup: &Lookup, qname: &Name, qtype: RecordType) -> Answer {
        let negative = |code: ResponseCode| Answer {
            code,
            authority: vec![self.soa(view.index)],
            ..Default::default()
        };
        if !view.loaded {
            // Before the first catalog read: SERVFAIL (a resolver tries again, or another
            // server) rather than an NXDOMAIN or empty answer it would cache.
            return Answer {
                code: ResponseCode::ServFail,
                ..Default::default()
            };
        }
        match lookup {
            Lookup::Unknown => negative(ResponseCode::NXDomain),
            Lookup::Apex => {
                let answers = match qtype {
                    RecordType::SOA => vec![self.soa(view.index)],
                    RecordType::NS => vec![Record::from_rdata(
                        qname.clone(),
                        self.ttl,
                        RData::NS(NS(self.ns_name())),
                    )],
                    _ => return negative(ResponseCode::NoError),
                };
                let additionals = match qtype {
                    RecordType::NS => vec![self.address_record(self.ns_name(), self.ns_addr)],
                    _ => Vec::new(),
                };
                Answer {
                    answers,
                    additionals,
                    ..Default::default()
                }
            }
            Lookup::NameServer => {
                if !wants_address(qtype, self.ns_addr) {
                    return negative(ResponseCode::NoError);
                }
                Answer {
                    answers: vec![self.address_record(qname.clone(), self.ns_addr)],
                    ..Default::default()
                }
            }
            Lookup::Node { name } => {
                let Some((_, addr)) = view.nodes.get(name) else {
                    return negative(ResponseCode::NXDomain);
                };
                let answers: Vec<Record> = addr
                    .iter()
                    .filter(|a| wants_address(qtype, **a))
                    .map(|a| self.address_record(qname.clone(), *a))
                    .collect();
                if answers.is_empty() {
                    return negative(ResponseCode::NoError);
                }
                Answer {
                    answers,
                    ..Default::default()
                }
            }
            Lookup::Service { name, tag } => {
                let mut instances: Vec<&Instance> = view.instances(name, tag.as_deref());
                if instances.is_empty() {
                    return negative(ResponseCode::NXDomain);
                }
                // Spread load: every answer in a fresh order.
                instances.shuffle(&mut rand::rng());
                let answer = self.instances(&instances, qname, qtype, self.ttl);
                if answer.answers.is_empty() {
                    return negative(ResponseCode::NoError);
                }
                answer
            }
            Lookup::Query { name } => {
                let Some((instances, ttl)) = self.query(view, name) else {
                    return negative(ResponseCode::NXDomain);
                };
                let refs: Vec<&Instance> = instances.iter().collect();
                let answer = self.instances(&refs, qname, qtype, ttl);
                if answer.answers.is_empty() {
                    return negative(ResponseCode::NoError);
                }
                answer
            }
        }
    }

    /// Runs a prepared query against the view: its instances in the query's order (shuffled,
    /// near node first) and the TTL it asks for. None when there is no such query or it picks
    /// nothing (NXDOMAIN, as Consul answers both).
    fn query(&self, view: &View, name: &str) -> Option<(Vec<Instance>, u32)> {
        let q = cairn_query::resolve(&view.queries, name).ok()?;
        let pool = if q.service.connect {
            &view.connect
        } else {
            &view.entries
        };
        let candidates = pool.get(&q.service.service).cloned().unwrap_or_default();
        // Over DNS the caller's address is not known here (answers are cached per question), so
        // `_ip` sorts nothing; `_agent` has no agent node either.
        let near = cairn_query::Near {
            name: &q.service.near,
            agent_node: "",
            source_ip: None,
        };
        let picked: Vec<Instance> = cairn_query::execute(&q, candidates, &near, None)
            .into_iter()
            .filter_map(|e| {
                Some(Instance {
                    node: e.node.node.clone(),
                    addr: e.address().parse().ok()?,
                    port: e.service.port,
                    tags: Vec::new(),
                })
            })
            .collect();
        if picked.is_empty() {
            return None;
        }
        let ttl = if q.dns.ttl.is_empty() {
            self.ttl
        } else {
            u32::try_from(q.dns_ttl().as_secs()).unwrap_or(u32::MAX)
        };
        Some((picked, ttl))
    }

    /// Address or SRV records for instances, in the order given.
    fn instances(
        &self,
        instances: &[&Instance],
        qname: &Name,
        qtype: RecordType,
        ttl: u32,
    ) -> Answer {
        match qtype {
            RecordType::SRV => self.srv(instances, qname, ttl),
            _ => Answer {
                answers: instances
                    .iter()
                    .filter(|i| wants_address(qtype, i.addr))
                    .map(|i| address_record(qname.clone(), i.addr, ttl))
                    .collect(),
                ..Default::default()
            },
        }
    }

    /// SRV records targeting node names, with the addresses in the additional section.
    fn srv(&self, instances: &[&Instance], qname: &Name, ttl: u32) -> Answer {
        let mut out = Answer::default();
        // One glue record per (target, address); names compare case-insensitively. A set, not
        // a search of the records so far: a service of 100 instances made that quadratic.
        let mut glued: HashSet<(String, IpAddr)> = HashSet::with_capacity(instances.len());
        for i in instances {
            let Some(target) = self.node_target(&i.node) else {
                continue;
            };
            out.answers.push(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::SRV(SRV::new(1, 1, i.port, target.clone())),
            ));
            if glued.insert((i.node.to_ascii_lowercase(), i.addr)) {
                out.additionals.push(address_record(target, i.addr, ttl));
            }
        }
        out
    }
}

/// An A or AAAA record.
fn address_record(name: Name, addr: IpAddr, ttl: u32) -> Record {
    let data = match addr {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

/// Whether an address answers a query type (ANY takes both families).
fn wants_address(qtype: RecordType, addr: IpAddr) -> bool {
    match qtype {
        RecordType::A => addr.is_ipv4(),
        RecordType::AAAA => addr.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imbl::HashMap;

    fn zone() -> Zone {
        Zone {
            domain: Name::from_ascii("consul.").unwrap(),
            datacenter: "dc1".into(),
            ttl: 0,
            ns_addr: "127.0.0.1".parse().unwrap(),
        }
    }

    fn view() -> View {
        let inst = |node: &str, addr: &str, tags: &[&str]| Instance {
            node: node.into(),
            addr: addr.parse().unwrap(),
            port: 8080,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let mut services = HashMap::new();
        services.insert(
            "web".to_string(),
            vec![
                inst("n1", "10.0.0.1", &["prod"]),
                inst("n2", "fd00::2", &[]),
            ],
        );
        let mut nodes = HashMap::new();
        nodes.insert(
            "n1".to_string(),
            ("n1".to_string(), Some("10.0.0.1".parse().unwrap())),
        );
        View {
            loaded: true,
            services,
            nodes,
            index: 42,
            ..Default::default()
        }
    }

    fn q(name: &str) -> Name {
        Name::from_ascii(name).unwrap()
    }

    #[test]
    fn services_answer_by_type() {
        let (z, v) = (zone(), view());
        let web = Lookup::Service {
            name: "web".into(),
            tag: None,
        };
        assert_eq!(
            z.answer(&v, &web, &q("web.service.consul."), RecordType::A)
                .answers
                .len(),
            1
        );
        assert_eq!(
            z.answer(&v, &web, &q("web.service.consul."), RecordType::AAAA)
                .answers
                .len(),
            1
        );
        assert_eq!(
            z.answer(&v, &web, &q("web.service.consul."), RecordType::ANY)
                .answers
                .len(),
            2
        );
        let srv = z.answer(&v, &web, &q("_web._tcp.service.consul."), RecordType::SRV);
        assert_eq!(srv.answers.len(), 2);
        assert_eq!(srv.additionals.len(), 2);
        let targets: Vec<String> = srv.answers.iter().map(|r| r.data.to_string()).collect();
        assert!(
            targets.iter().any(|t| t == "1 1 8080 n1.node.dc1.consul."),
            "{targets:?}"
        );
        let txt = z.answer(&v, &web, &q("web.service.consul."), RecordType::TXT);
        assert_eq!(
            (txt.code, txt.answers.len(), txt.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
        let tagged = Lookup::Service {
            name: "web".into(),
            tag: Some("prod".into()),
        };
        assert_eq!(
            z.answer(&v, &tagged, &q("prod.web.service.consul."), RecordType::ANY)
                .answers
                .len(),
            1
        );
    }

    /// Before the first catalog read nothing under the domain is denied: every question is
    /// SERVFAIL, with no SOA a resolver would cache a denial under.
    #[test]
    fn nothing_is_answered_before_the_first_view() {
        let z = zone();
        let empty = View::default();
        for (lookup, name) in [
            (
                Lookup::Service {
                    name: "web".into(),
                    tag: None,
                },
                "web.service.consul.",
            ),
            (Lookup::Node { name: "n1".into() }, "n1.node.consul."),
            (Lookup::Unknown, "nope.consul."),
            (Lookup::Apex, "consul."),
        ] {
            let a = z.answer(&empty, &lookup, &q(name), RecordType::A);
            assert_eq!(a.code, ResponseCode::ServFail, "{name}");
            assert!(a.answers.is_empty() && a.authority.is_empty(), "{name}");
        }
        // Once loaded, the same empty catalog denies.
        let loaded = View {
            loaded: true,
            ..Default::default()
        };
        let a = z.answer(&loaded, &Lookup::Unknown, &q("nope.consul."), RecordType::A);
        assert_eq!(a.code, ResponseCode::NXDomain);
    }

    #[test]
    fn negatives_carry_the_soa() {
        let (z, v) = (zone(), view());
        let missing = z.answer(
            &v,
            &Lookup::Service {
                name: "db".into(),
                tag: None,
            },
            &q("db.service.consul."),
            RecordType::A,
        );
        assert_eq!(missing.code, ResponseCode::NXDomain);
        assert_eq!(missing.authority[0].record_type(), RecordType::SOA);
        let node = z.answer(
            &v,
            &Lookup::Node { name: "n1".into() },
            &q("n1.node.consul."),
            RecordType::A,
        );
        assert_eq!(node.answers[0].data.to_string(), "10.0.0.1");
        let soa = z.answer(&v, &Lookup::Apex, &q("consul."), RecordType::SOA);
        assert!(
            soa.answers[0].data.to_string().contains(" 42 "),
            "serial is the index: {}",
            soa.answers[0].data
        );
        let ns = z.answer(&v, &Lookup::Apex, &q("consul."), RecordType::NS);
        assert_eq!(ns.additionals.len(), 1);
    }
}
