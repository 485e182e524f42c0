//! The cluster domain's records, built from Services and EndpointSlices, and the answers to
//! queries about them — the semantics of CoreDNS's `kubernetes` plugin:
//!
//! - `<svc>.<ns>.svc.<domain>`: A = the cluster IP, or every ready endpoint of a headless
//!   Service; CNAME for ExternalName; SRV = every named port.
//! - `<host>.<svc>.<ns>.svc.<domain>`: a headless Service's endpoint by hostname (StatefulSet
//!   pods) or by dashed address (`10-244-1-5`).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV of a named port (targets with A records
//!   in the additional section).
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A = a.b.c.d.
//! - PTR for cluster IPs and headless endpoints.
//! - Unknown names in the domain: NXDOMAIN with the zone's SOA; known names without the asked
//!   type: NOERROR with the SOA (NODATA). Everything else: REFUSED, or forwarded by the server.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    str::FromStr,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, CNAME, NS, PTR, SOA, SRV},
    },
};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

/// TTL of every answer, as CoreDNS's default.
const TTL: u32 = 5;

/// A named port: (name, port, protocol in lowercase).
type NamedPort = (String, u16, String);

#[derive(Debug, Clone, PartialEq)]
struct ServiceRecord {
    cluster_ip: Option<Ipv4Addr>,
    headless: bool,
    external_name: Option<String>,
    named_ports: Vec<NamedPort>,
    publish_not_ready: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct EndpointRecord {
    ip: Ipv4Addr,
    hostname: Option<String>,
    ready: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct SliceRecord {
    service: String,
    ports: Vec<NamedPort>,
    endpoints: Vec<EndpointRecord>,
}

/// What a query needs from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Send these bytes back (empty: send nothing).
    Reply(Vec<u8>),
    /// The name is outside the cluster domain: relay the query upstream.
    Forward,
}

/// The in-memory records of the cluster domain.
#[derive(Debug)]
pub struct Zone {
    domain: String,
    services: BTreeMap<(String, String), ServiceRecord>,
    slices: BTreeMap<(String, String), SliceRecord>,
    serial: u32,
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn undashed(label: &str) -> Option<Ipv4Addr> {
    Ipv4Addr::from_str(&label.replace('-', ".")).ok()
}

impl Zone {
    /// An empty zone for `domain` (`cluster.local`).
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.trim_end_matches('.').to_lowercase(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            serial: 1,
        }
    }

    fn changed(&mut self) {
        self.serial = self.serial.wrapping_add(1);
    }

    /// Add or replace a Service.
    pub fn apply_service(&mut self, service: &Service) {
        let (Some(ns), Some(name)) = (&service.metadata.namespace, &service.metadata.name) else {
            return;
        };
        let spec = service.spec.clone().unwrap_or_default();
        let ip_text = spec.cluster_ip.unwrap_or_default();
        let record = ServiceRecord {
            cluster_ip: ip_text.parse().ok(),
            headless: ip_text == "None",
            external_name: spec
                .external_name
                .filter(|_| spec.type_.as_deref() == Some("ExternalName")),
            named_ports: spec
                .ports
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    let name = p.name.filter(|n| !n.is_empty())?;
                    let port = u16::try_from(p.port).ok()?;
                    Some((
                        name.to_lowercase(),
                        port,
                        p.protocol
                            .unwrap_or_else(|| "TCP".to_owned())
                            .to_lowercase(),
                    ))
                })
                .collect(),
            publish_not_ready: spec.publish_not_ready_addresses == Some(true),
        };
        let key = (ns.to_lowercase(), name.to_lowercase());
        if self.services.get(&key) != Some(&record) {
            self.services.insert(key, record);
            self.changed();
        }
    }

    /// Forget a Service.
    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if self
            .services
            .remove(&(namespace.to_lowercase(), name.to_lowercase()))
            .is_some()
        {
            self.changed();
        }
    }

    /// Add or replace an EndpointSlice (IPv4 slices of a Service; others are ignored).
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let (Some(ns), Some(name)) = (&slice.metadata.namespace, &slice.metadata.name) else {
            return;
        };
        let key = (ns.to_lowercase(), name.clone());
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .map(|s| s.to_lowercase());
        let (Some(service), "IPv4") = (service, slice.address_type.as_str()) else {
            self.remove_slice(ns, name);
            return;
        };
        let record = SliceRecord {
            service,
            ports: slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p.name.clone().unwrap_or_default().to_lowercase(),
                        u16::try_from(p.port?).ok()?,
                        p.protocol
                            .clone()
                            .unwrap_or_else(|| "TCP".to_owned())
                            .to_lowercase(),
                    ))
                })
                .collect(),
            endpoints: slice
                .endpoints
                .iter()
                .flat_map(|e| {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    let hostname = e.hostname.clone().map(|h| h.to_lowercase());
                    e.addresses.iter().filter_map(move |a| {
                        Some(EndpointRecord {
                            ip: a.parse().ok()?,
                            hostname: hostname.clone(),
                            ready,
                        })
                    })
                })
                .collect(),
        };
        if self.slices.get(&key) != Some(&record) {
            self.slices.insert(key, record);
            self.changed();
        }
    }

    /// Forget an EndpointSlice.
    pub fn remove_slice(&mut self, namespace: &str, name: &str) {
        if self
            .slices
            .remove(&(namespace.to_lowercase(), name.to_owned()))
            .is_some()
        {
            self.changed();
        }
    }

    /// Answer one DNS message (wire format) with a response (wire format) of at most
    /// `max_size` bytes; names outside the domain are REFUSED. Empty when the input is not
    /// even a DNS header.
    pub fn answer(&self, query: &[u8], max_size: usize) -> Vec<u8> {
        match self.resolve(query, max_size, false) {
            Resolution::Reply(bytes) => bytes,
            Resolution::Forward => Vec::new(),
        }
    }

    /// Answer `query`, or say it should be forwarded (only when `can_forward`).
    pub fn resolve(&self, query: &[u8], max_size: usize, can_forward: bool) -> Resolution {
        if query.len() < 12 {
            return Resolution::Reply(Vec::new());
        }
        let id = u16::from_be_bytes([query[0], query[1]]);
        let Ok(request) = Message::from_vec(query) else {
            return Resolution::Reply(error(id, OpCode::Query, ResponseCode::FormErr));
        };
        if request.message_type() != MessageType::Query {
            return Resolution::Reply(Vec::new());
        }
        if request.op_code() != OpCode::Query {
            return Resolution::Reply(error(id, request.op_code(), ResponseCode::NotImp));
        }
        let [question] = request.queries() else {
            return Resolution::Reply(error(id, OpCode::Query, ResponseCode::FormErr));
        };
        let name = question.name().to_lowercase().to_ascii();
        let name = name.trim_end_matches('.');
        let mut response = Message::new();
        response
            .set_id(id)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(can_forward)
            .add_query(question.clone());
        let max_size = match request.extensions() {
            Some(edns) => {
                let mut reply_edns = Edns::new();
                reply_edns.set_max_payload(4096);
                response.set_edns(reply_edns);
                max_size.max(usize::from(edns.max_payload().clamp(512, 4096)))
            }
            None => max_size,
        };
        let in_domain = name == self.domain || name.ends_with(&format!(".{}", self.domain));
        let reverse = name.ends_with(".in-addr.arpa");
        if !in_domain && !reverse {
            if can_forward {
                return Resolution::Forward;
            }
            response.set_response_code(ResponseCode::Refused);
            return Resolution::Reply(encode(&response, max_size));
        }
        response.set_authoritative(true);
        let lookup = if reverse {
            self.reverse(name, question)
        } else {
            self.forward(name, question)
        };
        match lookup {
            Lookup::Found {
                answers,
                additionals,
            } => {
                for record in answers {
                    response.add_answer(record);
                }
                for record in additionals {
                    response.add_additional(record);
                }
            }
            Lookup::NoData => {
                response.add_name_server(self.soa());
            }
            Lookup::NxDomain => {
                response.set_response_code(ResponseCode::NXDomain);
                response.add_name_server(self.soa());
            }
        }
        Resolution::Reply(encode(&response, max_size))
    }

    fn fqdn(&self, relative: &str) -> Name {
        let text = if relative.is_empty() {
            format!("{}.", self.domain)
        } else {
            format!("{relative}.{}.", self.domain)
        };
        Name::from_ascii(text).unwrap_or_else(|_| Name::root())
    }

    fn soa(&self) -> Record {
        let soa = SOA::new(
            self.fqdn("ns.dns"),
            self.fqdn("hostmaster"),
            self.serial,
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(self.fqdn(""), TTL, RData::SOA(soa))
    }

    /// Ready (or published) endpoints of a Service, deduplicated by address, with the
    /// port numbers their slices give each port name.
    fn endpoints(
        &self,
        ns: &str,
        service: &str,
        publish_not_ready: bool,
    ) -> Vec<(EndpointRecord, Vec<NamedPort>)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for ((slice_ns, _), slice) in &self.slices {
            if slice_ns != ns || slice.service != service {
                continue;
            }
            for endpoint in &slice.endpoints {
                if (endpoint.ready || publish_not_ready) && seen.insert(endpoint.ip) {
                    out.push((endpoint.clone(), slice.ports.clone()));
                }
            }
        }
        out
    }

    fn endpoint_label(endpoint: &EndpointRecord) -> String {
        endpoint
            .hostname
            .clone()
            .unwrap_or_else(|| dashed(endpoint.ip))
    }

    fn forward(&self, name: &str, question: &Query) -> Lookup {
        let qtype = question.query_type();
        let relative = name
            .strip_suffix(&self.domain)
            .unwrap_or_default()
            .trim_end_matches('.');
        let labels: Vec<&str> = if relative.is_empty() {
            Vec::new()
        } else {
            relative.split('.').collect()
        };
        let owner = question.name().clone();
        let a = |ip: Ipv4Addr| Record::from_rdata(owner.clone(), TTL, RData::A(A(ip)));
        match labels.as_slice() {
            [] => match qtype {
                RecordType::SOA => Lookup::found(vec![self.soa()]),
                RecordType::NS => Lookup::found(vec![Record::from_rdata(
                    owner.clone(),
                    TTL,
                    RData::NS(NS(self.fqdn("ns.dns"))),
                )]),
                _ => Lookup::NoData,
            },
            ["svc"] | ["pod"] => Lookup::NoData,
            [ns, "svc"] => {
                if self.services.keys().any(|(n, _)| n == ns) {
                    Lookup::NoData
                } else {
                    Lookup::NxDomain
                }
            }
            [ip, _ns, "pod"] => match undashed(ip) {
                Some(ip) if matches!(qtype, RecordType::A | RecordType::ANY) => {
                    Lookup::found(vec![a(ip)])
                }
                Some(_) => Lookup::NoData,
                None => Lookup::NxDomain,
            },
            [_ns, "pod"] => Lookup::NoData,
            [svc, ns, "svc"] => {
                let Some(service) = self.services.get(&((*ns).to_owned(), (*svc).to_owned()))
                else {
                    return Lookup::NxDomain;
                };
                if let Some(target) = &service.external_name {
                    let target = Name::from_ascii(format!("{}.", target.trim_end_matches('.')))
                        .unwrap_or_else(|_| Name::root());
                    return Lookup::found(vec![Record::from_rdata(
                        owner.clone(),
                        TTL,
                        RData::CNAME(CNAME(target)),
                    )]);
                }
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                if matches!(qtype, RecordType::A | RecordType::ANY) {
                    if let Some(ip) = service.cluster_ip {
                        answers.push(a(ip));
                    } else if service.headless {
                        for (endpoint, _) in self.endpoints(ns, svc, service.publish_not_ready) {
                            answers.push(a(endpoint.ip));
                        }
                    }
                }
                if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    for (port_name, port, protocol) in &service.named_ports {
                        let (srv, extra) =
                            self.srv(ns, svc, service, port_name, *port, protocol, &owner);
                        answers.extend(srv);
                        additionals.extend(extra);
                    }
                }
                if answers.is_empty() {
                    Lookup::NoData
                } else {
                    Lookup::Found {
                        answers,
                        additionals,
                    }
                }
            }
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let Some(service) = self.services.get(&((*ns).to_owned(), (*svc).to_owned()))
                else {
                    return Lookup::NxDomain;
                };
                let (port, proto) = (&port[1..], &proto[1..]);
                let Some((port_name, number, protocol)) = service
                    .named_ports
                    .iter()
                    .find(|(n, _, p)| n == port && p == proto)
                else {
                    return Lookup::NxDomain;
                };
                if !matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    return Lookup::NoData;
                }
                let (answers, additionals) =
                    self.srv(ns, svc, service, port_name, *number, protocol, &owner);
                if answers.is_empty() {
                    Lookup::NoData
                } else {
                    Lookup::Found {
                        answers,
                        additionals,
                    }
                }
            }
            [host, svc, ns, "svc"] => {
                let Some(service) = self.services.get(&((*ns).to_owned(), (*svc).to_owned()))
                else {
                    return Lookup::NxDomain;
                };
                let found: Vec<Ipv4Addr> = self
                    .endpoints(ns, svc, service.publish_not_ready)
                    .into_iter()
                    .filter(|(e, _)| e.hostname.as_deref() == Some(*host) || dashed(e.ip) == *host)
                    .map(|(e, _)| e.ip)
                    .collect();
                if found.is_empty() {
                    Lookup::NxDomain
                } else if matches!(qtype, RecordType::A | RecordType::ANY) {
                    Lookup::found(found.into_iter().map(a).collect())
                } else {
                    Lookup::NoData
                }
            }
            _ => Lookup::NxDomain,
        }
    }

    /// SRV records of one named port (and the A records of their targets).
    #[allow(clippy::too_many_arguments)]
    fn srv(
        &self,
        ns: &str,
        svc: &str,
        service: &ServiceRecord,
        port_name: &str,
        port: u16,
        protocol: &str,
        owner: &Name,
    ) -> (Vec<Record>, Vec<Record>) {
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let base = format!("{svc}.{ns}.svc");
        if let Some(ip) = service.cluster_ip {
            let target = self.fqdn(&base);
            answers.push(Record::from_rdata(
                owner.clone(),
                TTL,
                RData::SRV(SRV::new(0, 100, port, target.clone())),
            ));
            additionals.push(Record::from_rdata(target, TTL, RData::A(A(ip))));
        } else if service.headless {
            for (endpoint, ports) in self.endpoints(ns, svc, service.publish_not_ready) {
                let Some((_, number, _)) = ports
                    .iter()
                    .find(|(n, _, p)| n == port_name && p == protocol)
                else {
                    continue;
                };
                let target = self.fqdn(&format!("{}.{base}", Self::endpoint_label(&endpoint)));
                answers.push(Record::from_rdata(
                    owner.clone(),
                    TTL,
                    RData::SRV(SRV::new(0, 100, *number, target.clone())),
                ));
                additionals.push(Record::from_rdata(target, TTL, RData::A(A(endpoint.ip))));
            }
        }
        (answers, additionals)
    }

    fn reverse(&self, name: &str, question: &Query) -> Lookup {
        let octets: Vec<&str> = name.trim_end_matches(".in-addr.arpa").split('.').collect();
        let ip = match octets.as_slice() {
            [d, c, b, a] => Ipv4Addr::from_str(&format!("{a}.{b}.{c}.{d}")).ok(),
            _ => None,
        };
        let Some(ip) = ip else {
            return Lookup::NxDomain;
        };
        let mut targets = Vec::new();
        for ((ns, svc), service) in &self.services {
            if service.cluster_ip == Some(ip) {
                targets.push(self.fqdn(&format!("{svc}.{ns}.svc")));
            }
            if service.headless {
                for (endpoint, _) in self.endpoints(ns, svc, service.publish_not_ready) {
                    if endpoint.ip == ip {
                        targets.push(self.fqdn(&format!(
                            "{}.{svc}.{ns}.svc",
                            Self::endpoint_label(&endpoint)
                        )));
                    }
                }
            }
        }
        if targets.is_empty() {
            return Lookup::NxDomain;
        }
        if !matches!(question.query_type(), RecordType::PTR | RecordType::ANY) {
            return Lookup::NoData;
        }
        let owner = question.name().clone();
        Lookup::found(
            targets
                .into_iter()
                .map(|t| Record::from_rdata(owner.clone(), TTL, RData::PTR(PTR(t))))
                .collect(),
        )
    }
}

enum Lookup {
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    NoData,
    NxDomain,
}

impl Lookup {
    fn found(answers: Vec<Record>) -> Self {
        Self::Found {
            answers,
            additionals: Vec::new(),
        }
    }
}

fn error(id: u16, op_code: OpCode, code: ResponseCode) -> Vec<u8> {
    Message::error_msg(id, op_code, code)
        .to_vec()
        .unwrap_or_default()
}

/// Encode, truncating (TC, no records) when the answer does not fit `max_size`.
fn encode(response: &Message, max_size: usize) -> Vec<u8> {
    let Ok(bytes) = response.to_vec() else {
        return error(response.id(), OpCode::Query, ResponseCode::ServFail);
    };
    if bytes.len() <= max_size {
        return bytes;
    }
    let mut truncated = Message::new();
    truncated
        .set_id(response.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(response.authoritative())
        .set_recursion_desired(response.recursion_desired())
        .set_recursion_available(response.recursion_available())
        .set_response_code(response.response_code())
        .set_truncated(true);
    for query in response.queries() {
        truncated.add_query(query.clone());
    }
    truncated.to_vec().unwrap_or_default()
}
