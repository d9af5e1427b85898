//! compose.yaml cannot drift from the code: every vod service's environment is read by that
//! service's own configuration loader, and the proxy routes each replica prefix to its replica.
//! Nor from what it promises operators: only the gateway and holder's HTTP are published on
//! every interface, operators' ports on 127.0.0.1 only, FTP nowhere; every secret (the gateway's
//! admin token among them) is required, none has a default; the gateway reads the database as a
//! role that cannot write.

use std::collections::{BTreeSet, HashMap};

use serde_norway::Value;

/// What an operator puts in `.env`.
const OPERATOR_VARIABLES: &[(&str, &str)] = &[
    ("VOD_FTP_PASSWORD", "ftp-secret"),
    ("VOD_POSTGRES_PASSWORD", "pg-secret"),
    ("VOD_GATEWAY_POSTGRES_PASSWORD", "pg-gateway-secret"),
    ("VOD_AMQP_PASSWORD", "amqp-secret"),
    ("VOD_FFLOW_TOKEN", "fflow-secret"),
    ("VOD_CHUNKS_TOKEN", "chunks-secret"),
    // The gateway refuses an admin token shorter than 16 bytes.
    ("VOD_ADMIN_TOKEN", "admin-token-secret"),
    ("VOD_GRAFANA_PASSWORD", "grafana-secret"),
    (
        "VOD_GARAGE_RPC_SECRET",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
    ("VOD_GARAGE_ADMIN_TOKEN", "garage-admin-secret"),
    ("VOD_S3_ACCESS_KEY_ID", "GK0123456789abcdef01234567"),
    (
        "VOD_S3_SECRET_ACCESS_KEY",
        "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
    ),
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
    assert_eq!(
        published_ports(&compose, "holder"),
        BTreeSet::new(),
        "holder's FTP ingest is for fflow, on the compose network"
    );
    assert_eq!(
        published_ports(&compose, "holder-proxy"),
        BTreeSet::from(["8090:8090".to_owned()]),
        "players reach the edge replicas through the proxy"
    );
    let proxy = workspace_file("deploy/holder-haproxy.cfg");
    for edge in ["holder-edge-1", "holder-edge-2"] {
        let config = load::<holder::Config>("HOLDER", edge, &compose);
        assert_eq!(port_of(&config.http_addr), 8090);
        assert_eq!(config.store, holder::StoreKind::S3, "{edge}");
        assert_eq!(
            (&config.s3.endpoint, &config.s3.bucket),
            (&holder.s3.endpoint, &holder.s3.bucket),
            "{edge} serves the bucket holder writes"
        );
        assert!(published_ports(&compose, edge).is_empty(), "{edge}");
        assert!(
            proxy.contains(&format!(" {edge}:8090 check")),
            "holder-proxy sends players to {edge}"
        );
    }
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
    assert!(published_ports(&compose, "prometheus").contains("127.0.0.1:9090:9090"));
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

/// `(host address, host ports, container ports)` of a `ports` entry: `[ip:]host:container`,
/// each side a port or a range.
fn parse_port(entry: &str) -> (Option<String>, String, String) {
    let parts: Vec<&str> = entry.split(':').collect();
    match parts.as_slice() {
        [host, container] => (None, (*host).to_owned(), (*container).to_owned()),
        [ip, host, container] => (
            Some((*ip).to_owned()),
            (*host).to_owned(),
            (*container).to_owned(),
        ),
        _ => panic!("a ports entry compose would not read: {entry}"),
    }
}

/// Every port of `range` (`2121` or `50000-50019`).
fn ports_of(range: &str) -> std::ops::RangeInclusive<u16> {
    let (low, high) = range.split_once('-').unwrap_or((range, range));
    low.parse().expect("a port")..=high.parse().expect("a port")
}

#[test]
fn only_the_gateway_and_holders_http_are_published_on_every_interface() {
    let compose = compose();
    let public: BTreeSet<(&str, &str)> =
        [("gateway", "8080:8080"), ("holder-proxy", "8090:8090")].into();
    let mut operators = BTreeSet::new();
    for (name, service) in services(&compose) {
        let name = name.as_str().expect("service name");
        for entry in service["ports"].as_sequence().into_iter().flatten() {
            let entry = entry
                .as_str()
                .unwrap_or_else(|| panic!("{name}: write ports as quoted text"));
            match parse_port(entry) {
                (None, _, _) => assert!(
                    public.contains(&(name, entry)),
                    "{name} publishes {entry} on every interface"
                ),
                (Some(ip), _, container) => {
                    assert_eq!(ip, "127.0.0.1", "{name} publishes {entry}");
                    operators.insert((name.to_owned(), container));
                }
            }
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("rabbitmq", "15672"),
        ("prometheus", "9090"),
        ("grafana", "3000"),
    ]
    .map(|(name, port)| (name.to_owned(), port.to_owned()))
    .into();
    assert_eq!(operators, expected, "operators' ports, on 127.0.0.1 only");
}

#[test]
fn no_ftp_port_is_published() {
    let compose = compose();
    let holder = load::<holder::Config>("HOLDER", "holder", &compose);
    let mut ftp_ports: Vec<u16> = holder.passive_ports().collect();
    ftp_ports.push(port_of(&holder.ftp_addr));
    for (name, service) in services(&compose) {
        for entry in service["ports"].as_sequence().into_iter().flatten() {
            let entry = entry.as_str().expect("ports as text");
            let (_, host, container) = parse_port(entry);
            for port in ports_of(&host).chain(ports_of(&container)) {
                assert!(
                    !ftp_ports.contains(&port),
                    "{name:?} publishes {entry}, an FTP port"
                );
            }
        }
    }
}

/// Whether an operator's variable holds a secret (a key id, for one, does not).
fn is_secret(name: &str) -> bool {
    ["PASSWORD", "TOKEN", "SECRET", "PASS"]
        .iter()
        .any(|word| name.contains(word))
}

#[test]
fn every_secret_is_required_and_none_has_a_default() {
    let text = workspace_file("compose.yaml");
    let mut rest = text.as_str();
    let mut secrets = BTreeSet::new();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("closed ${") + start;
        let expression = &rest[start + 2..end];
        let name = expression.split([':', '-', '?']).next().unwrap_or_default();
        if is_secret(name) {
            assert!(
                expression.starts_with(&format!("{name}:?")),
                "${{{expression}}} must be required (`${{{name}:?message}}`), with no default"
            );
            secrets.insert(name.to_owned());
        }
        rest = &rest[end + 1..];
    }
    let told: BTreeSet<String> = OPERATOR_VARIABLES
        .iter()
        .filter(|(name, _)| is_secret(name))
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        secrets, told,
        "the secrets compose asks for are the ones operators set"
    );

    let compose = compose();
    for (service, variable, secret) in [
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD", "grafana-secret"),
        ("rabbitmq", "RABBITMQ_DEFAULT_PASS", "amqp-secret"),
        ("postgres", "POSTGRES_PASSWORD", "pg-secret"),
        ("gateway", "GATEWAY_ADMIN_TOKEN", "admin-token-secret"),
    ] {
        assert_eq!(
            environment(&compose, service)
                .get(variable)
                .map(String::as_str),
            Some(secret),
            "{service} takes its secret from the operator"
        );
    }
    let header = text.split("\nx-").next().unwrap_or_default();
    for (name, _) in OPERATOR_VARIABLES {
        assert!(
            header.contains(name),
            "compose's header comment names {name}"
        );
    }
}

#[test]
fn the_gateway_reads_the_database_as_a_role_that_cannot_write() {
    let compose = compose();
    let postgres = environment(&compose, "postgres");
    let superuser = &postgres["POSTGRES_USER"];
    let gateway = load::<gateway::Config>("GATEWAY", "gateway", &compose);
    let url = secrecy::ExposeSecret::expose_secret(&gateway.postgres.url).to_owned();
    let user = url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once(':'))
        .map(|(user, _)| user)
        .expect("a user in the gateway's database URL");
    assert_eq!(user, "vod_gateway");
    assert_ne!(user, superuser, "the gateway is not the database superuser");
    assert!(
        url.contains(":pg-gateway-secret@"),
        "the gateway's password is its own: {url}"
    );
    assert_eq!(
        postgres
            .get("VOD_GATEWAY_POSTGRES_PASSWORD")
            .map(String::as_str),
        Some("pg-gateway-secret"),
        "the role is made with the password the gateway sends"
    );
    let volumes = format!("{:?}", compose["services"]["postgres"]["volumes"]);
    assert!(
        volumes.contains("./deploy/postgres/initdb:/docker-entrypoint-initdb.d"),
        "{volumes}"
    );
    let script = workspace_file("deploy/postgres/initdb/10-gateway-reader.sh");
    for needed in [
        "vod_gateway",
        "NOSUPERUSER",
        "GRANT SELECT ON ALL TABLES",
        "ALTER DEFAULT PRIVILEGES",
        "default_transaction_read_only",
    ] {
        assert!(script.contains(needed), "the role script lacks {needed}");
    }
    let uploader = load::<uploader::Config>("UPLOADER", "uploader", &compose);
    let uploader_url = secrecy::ExposeSecret::expose_secret(&uploader.postgres.url).to_owned();
    assert!(
        uploader_url.starts_with(&format!("postgres://{superuser}:")),
        "the uploaders own the schema the role reads (default privileges follow them): \
         {uploader_url}"
    );
}
