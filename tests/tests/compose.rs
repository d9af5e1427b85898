//! compose.yaml cannot drift from the code: every vod service's environment is read by that
//! service's own configuration loader, and the proxy routes each replica prefix to its replica.

use std::collections::{BTreeSet, HashMap};

use serde_norway::Value;

/// What an operator puts in `.env`.
const OPERATOR_VARIABLES: &[(&str, &str)] = &[
    ("VOD_FTP_PASSWORD", "ftp-secret"),
    ("VOD_POSTGRES_PASSWORD", "pg-secret"),
    ("VOD_AMQP_PASSWORD", "amqp-secret"),
    ("VOD_FFLOW_TOKEN", "fflow-secret"),
];

fn workspace_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn compose() -> Value {
    let mut compose: Value =
        serde_norway::from_str(&workspace_file("compose.yaml")).expect("compose.yaml parses");
    compose.apply_merge().expect("merge keys resolve");
    compose
}

/// `${NAME}`, `${NAME:?message}` and `${NAME:-default}` as compose interpolates them.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let expression = &rest[start + 2..end];
        let name = expression.split([':', '-', '?']).next().unwrap_or_default();
        let value = OPERATOR_VARIABLES
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| value.to_string())
            .or_else(|| {
                expression
                    .split_once(":-")
                    .map(|(_, default)| default.to_owned())
            })
            .unwrap_or_else(|| {
                panic!("compose.yaml needs {name}, which operators are not told to set")
            });
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn services(compose: &Value) -> &serde_norway::Mapping {
    compose["services"].as_mapping().expect("services")
}

fn environment(compose: &Value, service: &str) -> HashMap<String, String> {
    let environment = compose["services"][service]["environment"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{service} has an environment map"));
    environment
        .iter()
        .map(|(key, value)| {
            let key = key.as_str().expect("string key").to_owned();
            let value = match value {
                Value::String(text) => interpolate(text),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                other => panic!("{service}: {key} has an unexpected value {other:?}"),
            };
            (key, value)
        })
        .collect()
}

/// The services built from our image, with the binary each runs.
fn vod_services(compose: &Value) -> Vec<(String, String)> {
    services(compose)
        .iter()
        .filter(|(_, service)| service["image"].as_str() == Some("vod:latest"))
        .map(|(name, service)| {
            let name = name.as_str().expect("service name").to_owned();
            let binary = service["command"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{name} names its binary"))
                .to_owned();
            (name, binary)
        })
        .collect()
}

/// Reads a service's environment with its own loader: every variable must name a setting.
fn load<T: serde::de::DeserializeOwned>(prefix: &str, service: &str, compose: &Value) -> T {
    let environment = environment(compose, service);
    for key in environment.keys() {
        assert!(
            key.starts_with(&format!("{prefix}_")),
            "{service}: {key} is not read by it"
        );
    }
    let (config, unknown) = vod_infra::config::from_vars::<T>(prefix, Some(environment))
        .unwrap_or_else(|error| panic!("{service}: {error}"));
    assert!(
        unknown.is_empty(),
        "{service} sets variables nothing reads: {unknown:?}"
    );
    config
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("a port")
}

fn published_ports(compose: &Value, service: &str) -> BTreeSet<String> {
    compose["services"][service]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|port| port.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_vod_service_reads_exactly_the_environment_compose_gives_it() {
    let compose = compose();
    let mut checked = BTreeSet::new();
    for (name, binary) in vod_services(&compose) {
        let name = name.as_str();
        match binary.as_str() {
            "gateway" => load::<gateway::Config>("GATEWAY", name, &compose)
                .validate()
                .expect("valid gateway config"),
            "uploader" => load::<uploader::Config>("UPLOADER", name, &compose)
                .validate()
                .expect("valid uploader config"),
            "fflow" => load::<fflow::Config>("FFLOW", name, &compose)
                .validate()
                .expect("valid fflow config"),
            "holder" => load::<holder::Config>("HOLDER", name, &compose)
                .validate()
                .expect("valid holder config"),
            other => panic!("{name} runs an unknown binary {other}"),
        }
        checked.insert(binary);
    }
    let expected: BTreeSet<String> = ["gateway", "uploader", "fflow", "holder"]
        .map(str::to_owned)
        .into();
    assert_eq!(checked, expected, "every service runs in compose");
}

#[test]
fn replicas_schedulers_and_ports_are_as_documented() {
    let compose = compose();
    let uploaders: Vec<_> = vod_services(&compose)
        .into_iter()
        .filter(|(_, binary)| binary == "uploader")
        .map(|(name, _)| {
            let replicas = compose["services"][name.as_str()]["deploy"]["replicas"]
                .as_u64()
                .unwrap_or(1);
            let config = load::<uploader::Config>("UPLOADER", &name, &compose);
            (name, replicas, config.scheduler)
        })
        .collect();
    let with_scheduler: u64 = uploaders.iter().filter(|u| u.2).map(|u| u.1).sum();
    let without: u64 = uploaders.iter().filter(|u| !u.2).map(|u| u.1).sum();
    assert_eq!(
        with_scheduler, 1,
        "exactly one scheduler replica: {uploaders:?}"
    );
    assert!(
        without >= 2,
        "at least two plain uploader replicas: {uploaders:?}"
    );

    let gateway = load::<gateway::Config>("GATEWAY", "gateway", &compose);
    assert_eq!(port_of(&gateway.listen_addr), 8080);
    assert!(published_ports(&compose, "gateway").contains("8080:8080"));

    let holder = load::<holder::Config>("HOLDER", "holder", &compose);
    assert_eq!(port_of(&holder.http_addr), 8090);
    assert_eq!(port_of(&holder.ftp_addr), 2121);
    let holder_ports = published_ports(&compose, "holder");
    assert!(holder_ports.contains("8090:8090"), "{holder_ports:?}");
    assert!(holder_ports.contains("2121:2121"), "{holder_ports:?}");
    let passive = format!(
        "{min}-{max}:{min}-{max}",
        min = holder.passive_port_min,
        max = holder.passive_port_max
    );
    assert!(
        holder_ports.contains(&passive),
        "passive range {passive} published: {holder_ports:?}"
    );
    assert_eq!(
        gateway.holder_public_url, "http://localhost:8090",
        "playback URLs point at the published holder"
    );
}

#[test]
fn fflow_replicas_are_reached_through_the_proxy_by_their_prefix() {
    let compose = compose();
    let haproxy = workspace_file("deploy/haproxy.cfg");
    let mut replica_services = Vec::new();
    let mut peer_sets = Vec::new();
    let uploader = load::<uploader::Config>("UPLOADER", "uploader", &compose);
    for (name, binary) in vod_services(&compose) {
        if binary != "fflow" {
            continue;
        }
        let name = name.as_str();
        let fflow = load::<fflow::Config>("FFLOW", name, &compose);
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&fflow.internal_token),
            secrecy::ExposeSecret::expose_secret(&uploader.fflow_token),
            "{name} takes the token the uploaders send"
        );
        let holder = load::<holder::Config>("HOLDER", "holder", &compose);
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&fflow.holder.password),
            secrecy::ExposeSecret::expose_secret(&holder.ftp_password),
            "{name} logs in to holder with holder's credentials"
        );
        assert_eq!(fflow.holder.user, holder.ftp_user);
        assert_eq!(
            fflow.holder.addr,
            format!("holder:{}", port_of(&holder.ftp_addr))
        );
        let public_url = fflow
            .public_url
            .clone()
            .expect("replicas advertise the proxy");
        assert_eq!(public_url, "http://fflow-proxy:4050");
        let replica = &fflow.replica_id;
        let port = port_of(&fflow.listen_addr);
        // /rN/ goes to this service, and the bare address may reach it too.
        let acl = format!("acl replica_{replica} path_beg /{replica}/");
        let route = format!("use_backend fflow_{replica} if replica_{replica}");
        let server = format!("server {replica} {name}:{port}");
        for line in [&acl, &route, &server] {
            assert!(
                haproxy.contains(line.as_str()),
                "haproxy.cfg lacks `{line}`"
            );
        }
        let backend = haproxy
            .split("backend fflow_any")
            .nth(1)
            .expect("a backend for the bare address");
        assert!(backend.contains(&server), "{name} serves the bare address");
        replica_services.push(replica.clone());
        peer_sets.push((
            fflow.peers.clone(),
            replica.clone(),
            format!("http://{name}:{port}"),
        ));
    }
    // Every replica finds every other one, at that one's own service.
    for (peers, _, _) in &peer_sets {
        for (_, replica, url) in &peer_sets {
            assert_eq!(
                peers.base_url(replica),
                Some(url.as_str()),
                "peer {replica}"
            );
        }
    }
    assert!(
        replica_services.len() >= 2,
        "two fflow replicas: {replica_services:?}"
    );
    let distinct: BTreeSet<_> = replica_services.iter().collect();
    assert_eq!(
        distinct.len(),
        replica_services.len(),
        "replica ids are distinct"
    );

    assert_eq!(
        uploader.fflow_urls,
        vec!["http://fflow-proxy:4050".to_owned()]
    );
    assert!(
        haproxy.contains("bind :4050"),
        "the proxy listens where uploaders call it"
    );
}

/// The port each vod binary serves `/metrics` and `/readyz` on, as compose configures it, and
/// the address it binds.
fn operator_listener(compose: &Value, service: &str, binary: &str) -> String {
    match binary {
        "gateway" => load::<gateway::Config>("GATEWAY", service, compose).listen_addr,
        "uploader" => load::<uploader::Config>("UPLOADER", service, compose).listen_addr,
        "fflow" => load::<fflow::Config>("FFLOW", service, compose).listen_addr,
        "holder" => load::<holder::Config>("HOLDER", service, compose).http_addr,
        other => panic!("{service} runs an unknown binary {other}"),
    }
}

/// Prometheus's targets: `host:port` of static targets, and `name:port` of DNS discovery
/// (which finds every replica behind a name), each with its job's metrics path.
fn scrape_targets(prometheus: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut static_targets = BTreeSet::new();
    let mut discovered = BTreeSet::new();
    let jobs = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    for job in jobs {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        for config in job["static_configs"].as_sequence().into_iter().flatten() {
            for target in config["targets"].as_sequence().into_iter().flatten() {
                let target = target.as_str().expect("target is text");
                static_targets.insert(format!("{target}{path}"));
            }
        }
        for config in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            let port = config["port"].as_u64().expect("dns discovery names a port");
            for name in config["names"].as_sequence().into_iter().flatten() {
                let name = name.as_str().expect("name is text");
                discovered.insert(format!("{name}:{port}{path}"));
            }
        }
    }
    (static_targets, discovered)
}

#[test]
fn prometheus_scrapes_every_service_where_compose_makes_it_listen() {
    let compose = compose();
    let prometheus: Value =
        serde_norway::from_str(&workspace_file("deploy/prometheus/prometheus.yml"))
            .expect("prometheus.yml parses");
    let (static_targets, discovered) = scrape_targets(&prometheus);
    for (name, binary) in vod_services(&compose) {
        let listen = operator_listener(&compose, &name, &binary);
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{name} listens on {listen}, which other containers cannot reach"
        );
        let port = port_of(&listen);
        let target = format!("{name}:{port}/metrics");
        let replicas = compose["services"][name.as_str()]["deploy"]["replicas"]
            .as_u64()
            .unwrap_or(1);
        if replicas > 1 {
            assert!(
                discovered.contains(&target),
                "{name} runs {replicas} replicas: Prometheus must discover {target} by DNS \
                 ({discovered:?})"
            );
        } else {
            assert!(
                static_targets.contains(&target) || discovered.contains(&target),
                "Prometheus does not scrape {target}: {static_targets:?} {discovered:?}"
            );
        }
        let healthcheck: Vec<&str> = compose["services"][name.as_str()]["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name} has a healthcheck"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let readyz = format!("http://127.0.0.1:{port}/readyz");
        assert!(
            healthcheck.contains(&readyz.as_str()),
            "{name}'s healthcheck asks {readyz}: {healthcheck:?}"
        );
    }

    // Queue depth from the broker itself, per queue.
    assert!(
        static_targets.contains("rabbitmq:15692/metrics/per-object"),
        "{static_targets:?}"
    );
    let plugins = workspace_file("deploy/rabbitmq/enabled_plugins");
    assert!(plugins.contains("rabbitmq_prometheus"), "{plugins}");
    let rabbitmq_volumes = format!("{:?}", compose["services"]["rabbitmq"]["volumes"]);
    assert!(
        rabbitmq_volumes
            .contains("./deploy/rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins"),
        "{rabbitmq_volumes}"
    );

    let prometheus_volumes = format!("{:?}", compose["services"]["prometheus"]["volumes"]);
    assert!(
        prometheus_volumes
            .contains("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml"),
        "{prometheus_volumes}"
    );
    let datasource: Value = serde_norway::from_str(&workspace_file(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
    ))
    .expect("datasource parses");
    assert_eq!(
        datasource["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    assert!(published_ports(&compose, "prometheus").contains("9090:9090"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&workspace_file("deploy/grafana/dashboards/vod.json"))
            .expect("dashboard is JSON");
    assert!(
        dashboard["panels"].as_array().is_some_and(|p| p.len() >= 7),
        "the dashboard has its panels"
    );
}

#[test]
fn the_uploader_listener_is_configured_once_for_every_replica() {
    let compose = compose();
    let mut listeners = BTreeSet::new();
    for (name, binary) in vod_services(&compose) {
        if binary == "uploader" {
            let environment = environment(&compose, &name);
            let listen = environment
                .get("UPLOADER_LISTEN_ADDR")
                .unwrap_or_else(|| panic!("{name} sets UPLOADER_LISTEN_ADDR"));
            listeners.insert(listen.clone());
        }
    }
    assert_eq!(listeners.len(), 1, "{listeners:?}");
    let default_port = port_of(&uploader::Config::default().listen_addr);
    for taken in [8080, 8090, 2121, 4050] {
        assert_ne!(default_port, taken, "the uploader's default port is free");
    }
}
