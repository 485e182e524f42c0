//! Zone answers checked through the wire format, and the server over 127.0.0.1.

use std::{collections::BTreeMap, net::Ipv4Addr, str::FromStr};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::Zone;

fn service(ns: &str, name: &str, ip: &str, ports: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.to_owned()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: Some((*n).to_owned()),
                        port: *p,
                        protocol: Some((*proto).to_owned()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(
    ns: &str,
    name: &str,
    service: &str,
    endpoints: &[(&str, Option<&str>, bool)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                service.to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints: endpoints
            .iter()
            .map(|(ip, host, ready)| Endpoint {
                addresses: vec![(*ip).to_owned()],
                hostname: host.map(str::to_owned),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".to_owned()),
            port: Some(8080),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
    }
}

fn zone() -> Zone {
    let mut zone = Zone::new("cluster.local");
    zone.apply_service(&service(
        "default",
        "echo",
        "10.96.5.6",
        &[("http", 80, "TCP")],
    ));
    zone.apply_service(&service("default", "web", "None", &[("http", 80, "TCP")]));
    zone.apply_slice(&slice(
        "default",
        "web-abc",
        "web",
        &[
            ("10.244.1.5", Some("web-0"), true),
            ("10.244.2.5", None, true),
            ("10.244.3.5", None, false),
        ],
    ));
    let mut external = service("default", "ext", "", &[]);
    if let Some(spec) = external.spec.as_mut() {
        spec.type_ = Some("ExternalName".to_owned());
        spec.external_name = Some("db.example.com".to_owned());
    }
    zone.apply_service(&external);
    zone
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_str(name).expect("name"), qtype));
    message.to_vec().expect("encode")
}

fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Message {
    let reply = zone.answer(&query(name, qtype), 512);
    let message = Message::from_vec(&reply).expect("decode reply");
    assert_eq!(message.id(), 4242);
    message
}

fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

#[test]
fn services_headless_endpoints_and_pods_resolve() {
    let zone = zone();
    let echo = ask(&zone, "echo.default.svc.cluster.local.", RecordType::A);
    assert!(echo.authoritative());
    assert_eq!(a_records(&echo), vec![Ipv4Addr::new(10, 96, 5, 6)]);
    // Case-insensitive.
    let upper = ask(&zone, "ECHO.Default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&upper).len(), 1);
    let web = ask(&zone, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        a_records(&web),
        vec![Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 5)]
    );
    let host = ask(&zone, "web-0.web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&host), vec![Ipv4Addr::new(10, 244, 1, 5)]);
    let dashed = ask(
        &zone,
        "10-244-2-5.web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(a_records(&dashed), vec![Ipv4Addr::new(10, 244, 2, 5)]);
    let pod = ask(
        &zone,
        "10-244-9-9.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_eq!(a_records(&pod), vec![Ipv4Addr::new(10, 244, 9, 9)]);
    let cname = ask(&zone, "ext.default.svc.cluster.local.", RecordType::A);
    assert!(
        matches!(cname.answers()[0].data(), RData::CNAME(c) if c.0.to_ascii() == "db.example.com.")
    );
}

#[test]
fn srv_and_ptr_records() {
    let zone = zone();
    let srv = ask(
        &zone,
        "_http._tcp.echo.default.svc.cluster.local.",
        RecordType::SRV,
    );
    match srv.answers()[0].data() {
        RData::SRV(s) => {
            assert_eq!((s.priority(), s.weight(), s.port()), (0, 100, 80));
            assert_eq!(s.target().to_ascii(), "echo.default.svc.cluster.local.");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a_records(
            &Message::from_vec(&zone.answer(
                &query("echo.default.svc.cluster.local.", RecordType::A),
                512
            ))
            .expect("m")
        )
        .len(),
        1
    );
    assert_eq!(srv.additionals().len(), 1);
    let headless = ask(
        &zone,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let targets: Vec<String> = headless
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some(format!("{} {}", s.port(), s.target().to_ascii())),
            _ => None,
        })
        .collect();
    assert!(
        targets.contains(&"8080 web-0.web.default.svc.cluster.local.".to_owned()),
        "{targets:?}"
    );
    assert!(
        targets.contains(&"8080 10-244-2-5.web.default.svc.cluster.local.".to_owned()),
        "{targets:?}"
    );
    let ptr = ask(&zone, "6.5.96.10.in-addr.arpa.", RecordType::PTR);
    assert!(
        matches!(ptr.answers()[0].data(), RData::PTR(p) if p.0.to_ascii() == "echo.default.svc.cluster.local.")
    );
    let endpoint_ptr = ask(&zone, "5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert!(
        matches!(endpoint_ptr.answers()[0].data(), RData::PTR(p) if p.0.to_ascii() == "web-0.web.default.svc.cluster.local.")
    );
}

#[test]
fn unknown_names_missing_types_and_bad_queries() {
    let mut zone = zone();
    let missing = ask(&zone, "nothing.default.svc.cluster.local.", RecordType::A);
    assert_eq!(missing.response_code(), ResponseCode::NXDomain);
    assert!(missing.authoritative());
    assert!(
        matches!(missing.name_servers()[0].data(), RData::SOA(s) if s.mname().to_ascii() == "ns.dns.cluster.local.")
    );
    let nodata = ask(&zone, "echo.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(nodata.response_code(), ResponseCode::NoError);
    assert!(nodata.answers().is_empty());
    assert_eq!(nodata.name_servers().len(), 1);
    assert_eq!(
        ask(&zone, "svc.cluster.local.", RecordType::A).response_code(),
        ResponseCode::NoError
    );
    assert_eq!(
        ask(&zone, "example.com.", RecordType::A).response_code(),
        ResponseCode::Refused
    );
    // Garbage with a readable header: FORMERR with its id; shorter than a header: nothing.
    let garbage = [
        0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xde, 0xad,
    ];
    let formerr = Message::from_vec(&zone.answer(&garbage, 512)).expect("formerr");
    assert_eq!(
        (formerr.id(), formerr.response_code()),
        (0x1234, ResponseCode::FormErr)
    );
    assert!(zone.answer(&[1, 2, 3], 512).is_empty());
    // Removing the Service makes its name disappear.
    zone.remove_service("default", "echo");
    assert_eq!(
        ask(&zone, "echo.default.svc.cluster.local.", RecordType::A).response_code(),
        ResponseCode::NXDomain
    );
    zone.remove_slice("default", "web-abc");
    assert!(a_records(&ask(&zone, "web.default.svc.cluster.local.", RecordType::A)).is_empty());
}

#[test]
fn large_answers_truncate_over_udp_unless_edns_allows_them() {
    let mut zone = Zone::new("cluster.local");
    zone.apply_service(&service("default", "big", "None", &[("http", 80, "TCP")]));
    let ips: Vec<String> = (0..60)
        .map(|i| format!("10.244.{}.{}", i / 200, i % 200 + 2))
        .collect();
    let endpoints: Vec<(&str, Option<&str>, bool)> =
        ips.iter().map(|ip| (ip.as_str(), None, true)).collect();
    zone.apply_slice(&slice("default", "big-1", "big", &endpoints));
    let udp = Message::from_vec(
        &zone.answer(&query("big.default.svc.cluster.local.", RecordType::A), 512),
    )
    .expect("m");
    assert!(udp.truncated() && udp.answers().is_empty());
    let tcp = Message::from_vec(&zone.answer(
        &query("big.default.svc.cluster.local.", RecordType::A),
        65535,
    ))
    .expect("m");
    assert_eq!(tcp.answers().len(), 60);
    let mut with_edns =
        Message::from_vec(&query("big.default.svc.cluster.local.", RecordType::A)).expect("m");
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.set_edns(edns);
    let reply = Message::from_vec(&zone.answer(&with_edns.to_vec().expect("e"), 512)).expect("m");
    assert!(!reply.truncated());
    assert_eq!(reply.answers().len(), 60);
}

#[tokio::test]
async fn the_server_answers_udp_and_tcp_and_forwards_outside_names() {
    use std::sync::{Arc, RwLock};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpStream, UdpSocket},
    };

    // A fake upstream answering everything with NOERROR and no records.
    let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("upstream");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = upstream.recv_from(&mut buf).await {
            if let Ok(mut m) = Message::from_vec(&buf[..n]) {
                m.set_message_type(MessageType::Response)
                    .set_recursion_available(true);
                let _ = upstream.send_to(&m.to_vec().expect("e"), peer).await;
            }
        }
    });
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("probe")
        .local_addr()
        .expect("a")
        .port();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let zone = Arc::new(RwLock::new(zone()));
    let metrics = Arc::new(crate::Metrics::default());
    let config = crate::ServerConfig {
        listen: vec![listen],
        upstream: Some(upstream_addr),
    };
    tokio::spawn(crate::serve(config, zone, metrics.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    client.connect(listen).await.expect("connect");
    let mut buf = [0u8; 1500];
    client.send(&[0xff; 5]).await.expect("garbage"); // ignored, server keeps running
    client
        .send(&query("echo.default.svc.cluster.local.", RecordType::A))
        .await
        .expect("send");
    let n = client.recv(&mut buf).await.expect("recv");
    assert_eq!(
        a_records(&Message::from_vec(&buf[..n]).expect("m")),
        vec![Ipv4Addr::new(10, 96, 5, 6)]
    );
    client
        .send(&query("example.com.", RecordType::A))
        .await
        .expect("send");
    let n = client.recv(&mut buf).await.expect("recv");
    let forwarded = Message::from_vec(&buf[..n]).expect("m");
    assert_eq!(forwarded.response_code(), ResponseCode::NoError);
    assert!(forwarded.recursion_available());

    let mut tcp = TcpStream::connect(listen).await.expect("tcp");
    for _ in 0..2 {
        let q = query("web-0.web.default.svc.cluster.local.", RecordType::A);
        tcp.write_all(&u16::try_from(q.len()).expect("len").to_be_bytes())
            .await
            .expect("w");
        tcp.write_all(&q).await.expect("w");
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await.expect("len");
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut reply).await.expect("reply");
        assert_eq!(
            a_records(&Message::from_vec(&reply).expect("m")),
            vec![Ipv4Addr::new(10, 244, 1, 5)]
        );
    }
    let mut text = String::new();
    metrics.render(&mut text);
    assert!(text.contains("skiff_dns_forwarded_total 1"), "{text}");
}
