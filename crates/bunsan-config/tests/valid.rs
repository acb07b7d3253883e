//! Valid configs decode to exactly the expected `Config`, defaults included.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bunsan_config::{
    AccessLogTarget, AdminConfig, AffinityConfig, AffinityMode, CertFiles, Config, ControlDelivery, HashKey,
    HealthConfig, HealthKind, ListenerConfig, ListenerLimits, LoadError, NodeSettings, OutlierConfig,
    PoolConfig, Protocol, ProxyVersion, RetryConfig, Secret, ServerConfig, SessionKeySource, TlsFiles,
    UpstreamProtocol, UpstreamTls,
};
use bunsan_core::{Algorithm, ServerState};

/// Every key bunsan knows, each set to something other than its default where it has one.
const FULL: &str = r#"
[node]
workers = 4
shutdown_timeout = "1m30s"
session_key_file = "keys/session.key"
max_sessions = 5000

[admin]
listen = "0.0.0.0:9090"
token = "0123456789abcdef-very-secret"

[[listener]]
name = "web"
listen = "0.0.0.0:8080"
pool = "app"

[[listener]]
name = "web-tls"
listen = "[::]:8443"
protocol = "http"
pool = "app"
tls = { cert = "certs/web.pem", key = "/etc/bunsan/web.key" }

[[listener]]
name = "db"
listen = "127.0.0.1:0"
protocol = "tcp"
pool = "db"

# Port 0 twice is fine: each socket gets its own free port.
[[listener]]
name = "db.2"
listen = "127.0.0.1:0"
protocol = "tcp"
pool = "db"

[[pool]]
name = "app"
algorithm = "maglev"
hash_key = "header:X-User-Id"
connect_timeout = "250ms"
response_timeout = "30s"
idle_timeout = "2m"
max_idle_per_server = 0
affinity = { mode = "cookie", name = "SID", idle_timeout = "10m", max_lifetime = "12h" }
health = { kind = "http", path = "/healthz?full=1", host = "app.internal:8080", expect = "204", interval = "5s", timeout = "500ms", fall = 3, rise = 100 }
outlier = { consecutive_failures = 1000, base_ejection = "30s", max_ejection = "30s", max_ejected_percent = 100 }
retry = { attempts = 10, buffer = "1MiB", budget_percent = 100, min_retries_per_second = 100000 }

[[pool.server]]
name = "host1"
addr = "10.0.0.1:9001"
capacity = 3
state = "drain"

[[pool.server]]
name = "host_2"
addr = "[fd00::2]:9001"
capacity = 10000
state = "maint"

[[pool.server]]
name = "local"
addr = "localhost:9003"
state = "ready"

[[pool]]
name = "db"
algorithm = "round-robin"
max_idle_per_server = 100000

[[pool.server]]
name = "primary"
addr = "10.0.1.1:5432"

# The same keys as standard tables, after the pool's servers.
[pool.health]
kind = "tcp"
interval = "1s"
timeout = "1s"
fall = 1
rise = 1

[pool.outlier]
consecutive_failures = 0

[pool.retry]
attempts = 1
buffer = 0
budget_percent = 0
min_retries_per_second = 0

[[pool]]
name = "spare"
"#;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn server(
    name: &str,
    addr_text: &str,
    resolved: SocketAddr,
    capacity: u32,
    state: ServerState,
) -> ServerConfig {
    ServerConfig { name: name.into(), addr: resolved, addr_text: addr_text.into(), capacity, state }
}

fn pool(name: &str, algorithm: Algorithm, servers: Vec<ServerConfig>) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        algorithm,
        hash_key: None,
        connect_timeout: Duration::from_secs(3),
        response_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_idle_per_server: 256,
        affinity: None,
        health: None,
        outlier: Some(OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }),
        upstream: UpstreamProtocol::Http1,
        upstream_tls: None,
        send_proxy: None,
        max_body: None,
        response_header_bytes: 64 * 1024,
        retry: RetryConfig { attempts: 3, buffer: 65_536, budget_percent: 20, min_retries_per_second: 10 },
        servers,
    }
}

fn listener(
    name: &str,
    listen: &str,
    protocol: Protocol,
    pool: &str,
    tls: Option<TlsFiles>,
) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        listen: addr(listen),
        protocol,
        pool: pool.into(),
        tls,
        accept_proxy: false,
        limits: ListenerLimits {
            max_connections: 25_000,
            max_connections_per_client: 0,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            header_bytes: 64 * 1024,
            header_count: 100,
            uri_bytes: 8 * 1024,
            h2_max_streams: 256,
        },
    }
}

/// What `FULL` means, with the TLS cert resolved against `base`.
fn expected_full(base: &Path) -> Config {
    let localhost = ("localhost", 9003).to_socket_addrs().ok().and_then(|mut a| a.next()).expect("localhost");
    let tls =
        TlsFiles { cert: base.join("certs/web.pem"), key: PathBuf::from("/etc/bunsan/web.key"), sni: vec![] };
    let app = PoolConfig {
        hash_key: Some(HashKey::Header("x-user-id".into())),
        connect_timeout: Duration::from_millis(250),
        response_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(120),
        max_idle_per_server: 0,
        affinity: Some(AffinityConfig {
            mode: AffinityMode::Cookie,
            name: "SID".into(),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(12 * 3600),
        }),
        health: Some(HealthConfig {
            kind: HealthKind::Http {
                path: "/healthz?full=1".into(),
                host: Some("app.internal:8080".into()),
                expect: 204..=204,
            },
            interval: Duration::from_secs(5),
            timeout: Duration::from_millis(500),
            fall: 3,
            rise: 100,
        }),
        outlier: Some(OutlierConfig {
            consecutive_failures: 1000,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(30),
            max_ejected_percent: 100,
        }),
        retry: RetryConfig {
            attempts: 10,
            buffer: 1 << 20,
            budget_percent: 100,
            min_retries_per_second: 100_000,
        },
        ..pool(
            "app",
            Algorithm::Maglev,
            vec![
                server("host1", "10.0.0.1:9001", addr("10.0.0.1:9001"), 3, ServerState::Drain),
                server("host_2", "[fd00::2]:9001", addr("[fd00::2]:9001"), 10000, ServerState::Maint),
                server("local", "localhost:9003", localhost, 1, ServerState::Ready),
            ],
        )
    };
    let db_servers = vec![server("primary", "10.0.1.1:5432", addr("10.0.1.1:5432"), 1, ServerState::Ready)];
    let db = PoolConfig {
        max_idle_per_server: 100_000,
        health: Some(HealthConfig {
            kind: HealthKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fall: 1,
            rise: 1,
        }),
        outlier: None,
        retry: RetryConfig { attempts: 1, buffer: 0, budget_percent: 0, min_retries_per_second: 0 },
        ..pool("db", Algorithm::RoundRobin, db_servers)
    };
    Config {
        node: NodeSettings {
            workers: Some(4),
            shutdown_timeout: Duration::from_secs(90),
            session_key: SessionKeySource::File(base.join("keys/session.key")),
            max_sessions: 5000,
            access_log: None,
            max_connections: 100_000,
        },
        admin: Some(AdminConfig {
            listen: addr("0.0.0.0:9090"),
            token: Some(Secret::new("0123456789abcdef-very-secret")),
        }),
        listeners: vec![
            listener("web", "0.0.0.0:8080", Protocol::Http, "app", None),
            listener("web-tls", "[::]:8443", Protocol::Http, "app", Some(tls)),
            listener("db", "127.0.0.1:0", Protocol::Tcp, "db", None),
            listener("db.2", "127.0.0.1:0", Protocol::Tcp, "db", None),
        ],
        pools: vec![app, db, pool("spare", Algorithm::LeastLoad, vec![])],
        control: None,
    }
}

#[test]
fn full_config_decodes_every_key() {
    let config = bunsan_config::parse(FULL, Path::new("bunsan.toml")).expect("valid config");
    assert_eq!(config, expected_full(Path::new("")));
    assert_eq!(config.pool("db").map(|p| p.servers.len()), Some(1));
    assert!(config.pool("nope").is_none());
}

#[test]
fn tls_paths_resolve_against_the_config_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf_dir = dir.path().join("conf");
    std::fs::create_dir(&conf_dir).expect("mkdir");
    let path = conf_dir.join("bunsan.toml");
    std::fs::write(&path, FULL).expect("write config");
    let config = bunsan_config::load(&path).expect("valid config");
    assert_eq!(config, expected_full(&conf_dir));
    let tls = config.listeners[1].tls.as_ref().expect("tls");
    assert_eq!(tls.cert, conf_dir.join("certs").join("web.pem"));
    assert_eq!(tls.key, Path::new("/etc/bunsan/web.key"));
}

#[test]
fn tls_can_be_a_standard_table() {
    let source = r#"
[[listener]]
name = "web"
listen = "127.0.0.1:8443"
pool = "app"
[listener.tls]
cert = "web.pem"
key = "web.key"
sni = [{ cert = "a.pem", key = "a.key" }, { cert = "/etc/b.pem", key = "b.key" }]

[[pool]]
name = "app"
"#;
    let config = bunsan_config::parse(source, Path::new("/srv/b.toml")).expect("valid config");
    let sni = vec![
        CertFiles { cert: "/srv/a.pem".into(), key: "/srv/a.key".into() },
        CertFiles { cert: "/etc/b.pem".into(), key: "/srv/b.key".into() },
    ];
    let tls = TlsFiles { cert: "/srv/web.pem".into(), key: "/srv/web.key".into(), sni };
    assert_eq!(config.listeners[0].tls, Some(tls));
}

#[test]
fn minimal_config_gets_every_default() {
    let source =
        "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\n[[pool]]\nname = \"p\"\n";
    let config = bunsan_config::parse(source, Path::new("b.toml")).expect("valid config");
    let node = NodeSettings {
        workers: None,
        shutdown_timeout: Duration::from_secs(30),
        session_key: SessionKeySource::File(PathBuf::from("session.key")),
        max_sessions: 1_000_000,
        access_log: None,
        max_connections: 100_000,
    };
    assert_eq!(config.node, node);
    assert_eq!(config.admin, None);
    assert_eq!(config.listeners, vec![listener("l", "127.0.0.1:80", Protocol::Http, "p", None)]);
    assert_eq!(config.pools, vec![pool("p", Algorithm::LeastLoad, vec![])]);
}

#[test]
fn maglev_hashes_the_client_ip_by_default_and_takes_cookies() {
    let source = r#"
[[listener]]
name = "l"
listen = "127.0.0.1:80"
pool = "a"
[[pool]]
name = "a"
algorithm = "maglev"
[[pool]]
name = "b"
algorithm = "maglev"
hash_key = "cookie:Session_ID"
[[pool]]
name = "c"
algorithm = "maglev"
hash_key = "path"
"#;
    let config = bunsan_config::parse(source, Path::new("b.toml")).expect("valid config");
    let keys: Vec<_> = config.pools.iter().map(|p| p.hash_key.clone()).collect();
    let expected = [HashKey::ClientIp, HashKey::Cookie("Session_ID".into()), HashKey::Path];
    assert_eq!(keys, expected.map(Some));
}

#[test]
fn admin_on_loopback_needs_no_token_and_zero_shutdown_is_allowed() {
    let source = r#"
node = { shutdown_timeout = "0s" }
admin = { listen = "[::1]:9090" }
listener = [{ name = "l", listen = "127.0.0.1:80", pool = "p" }]
pool = [{ name = "p", server = [{ name = "s", addr = "127.0.0.1:81" }] }]
"#;
    let config = bunsan_config::parse(source, Path::new("b.toml")).expect("valid config");
    assert_eq!(config.node.shutdown_timeout, Duration::ZERO);
    assert_eq!(config.admin, Some(AdminConfig { listen: addr("[::1]:9090"), token: None }));
    assert_eq!(config.pools[0].servers[0].addr, addr("127.0.0.1:81"));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = bunsan_config::parse(FULL, Path::new("b.toml")).expect("valid config");
    let debug = format!("{config:?}");
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(debug.contains("Secret(***)"));
}

#[test]
fn load_reports_unreadable_files_and_names_the_file_in_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let err = bunsan_config::load(&missing).expect_err("no such file");
    assert!(matches!(err, LoadError::Read { .. }));
    assert!(err.to_string().starts_with("cannot read config file "), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bogus = 1\n").expect("write config");
    let err = bunsan_config::load(&bad).expect_err("invalid config");
    let first = err.to_string().lines().next().map(str::to_owned).unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "{}:1:1: bogus: unknown key (valid here: node, admin, listener, pool, control)",
            bad.display()
        )
    );
}

#[test]
fn affinity_modes_defaults_and_inline_session_keys() {
    let source = r#"
[node]
session_key = "0123456789abcdef0123456789abcdef"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
pool = "a"

[[listener]]
name = "raw"
listen = "127.0.0.1:0"
protocol = "tcp"
pool = "c"

[[pool]]
name = "a"
affinity = { mode = "cookie" }

[[pool]]
name = "b"
affinity = { mode = "header", name = "X-Session" }

[[pool]]
name = "c"
affinity = { mode = "client-ip", idle_timeout = "2s" }

[[pool]]
name = "d"
affinity = { mode = "none" }
"#;
    let config = bunsan_config::parse(source, Path::new("/etc/b.toml")).expect("valid config");
    assert_eq!(
        config.node.session_key,
        SessionKeySource::Inline(Secret::new("0123456789abcdef0123456789abcdef"))
    );
    let affinity = |i: usize| config.pools[i].affinity.clone();
    let thirty_minutes = Duration::from_secs(1800);
    let day = Duration::from_secs(86_400);
    let expect = |mode, name: &str, idle| AffinityConfig {
        mode,
        name: name.into(),
        idle_timeout: idle,
        max_lifetime: day,
    };
    assert_eq!(affinity(0), Some(expect(AffinityMode::Cookie, "bunsan_session", thirty_minutes)));
    assert_eq!(affinity(1), Some(expect(AffinityMode::Header, "x-session", thirty_minutes)));
    assert_eq!(affinity(2), Some(expect(AffinityMode::ClientIp, "", Duration::from_secs(2))));
    assert_eq!(affinity(3), None);
    assert!(!format!("{:?}", config.node).contains("0123456789abcdef"), "the key leaked into Debug");
}

#[test]
fn minimal_check_tables_get_their_defaults() {
    let source = r#"
[[listener]]
name = "l"
listen = "127.0.0.1:80"
pool = "a"
[[pool]]
name = "a"
health = { kind = "http" }
outlier = {}
retry = {}
[[pool]]
name = "b"
health = { kind = "none" }
outlier = { consecutive_failures = 0, base_ejection = "1m" }
"#;
    let config = bunsan_config::parse(source, Path::new("b.toml")).expect("valid config");
    let health = HealthConfig {
        kind: HealthKind::Http { path: "/".into(), host: None, expect: 200..=399 },
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        fall: 2,
        rise: 2,
    };
    let defaults = pool("a", Algorithm::LeastLoad, vec![]);
    assert_eq!(config.pools[0], PoolConfig { health: Some(health), ..defaults });
    assert_eq!(config.pools[1].health, None);
    assert_eq!(config.pools[1].outlier, None);
    assert_eq!(config.pools[0].outlier, Some(OutlierConfig::default()));
    assert_eq!(config.pools[0].retry, RetryConfig::default());
}

#[test]
fn retry_buffers_take_bytes_or_sizes_with_units() {
    let cases = [
        ("65536", 65_536),
        ("0x10000", 65_536),
        ("\"512B\"", 512),
        ("\"64KiB\"", 65_536),
        ("\"64KB\"", 64_000),
        ("\"10kB\"", 10_000),
        ("\"1MB\"", 1_000_000),
        ("\"64MiB\"", 64 << 20),
        ("\"0B\"", 0),
    ];
    for (written, bytes) in cases {
        let source = format!(
            "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nretry = {{ buffer = {written} }}\n"
        );
        let config = bunsan_config::parse(&source, Path::new("b.toml")).expect(written);
        assert_eq!(config.pools[0].retry.buffer, bytes, "{written}");
    }
}

#[test]
fn control_takes_one_url_or_several_and_has_defaults() {
    let base = "[[listener]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\npool = \"p\"\n[[pool]]\nname = \"p\"\n";
    let one = format!("{base}[control]\nurl = \"http://127.0.0.1:9800/\"\n");
    let config = bunsan_config::parse(&one, Path::new("b.toml")).expect("valid config");
    let control = config.control.expect("a control table");
    assert_eq!(control.urls, ["http://127.0.0.1:9800"]);
    assert_eq!(control.delivery, ControlDelivery::Change);
    assert_eq!((control.interval, control.stale_after), (Duration::from_secs(1), Duration::from_secs(10)));
    assert!(!control.assign && control.token.is_none() && control.name.is_none());

    let many = format!(
        "{base}[control]\nurl = [\"http://10.0.0.1:9800\", \"http://10.0.0.2:9800\"]\n\
         token = \"sub-token\"\ndelivery = \"periodic\"\ninterval = \"500ms\"\nstale_after = \"3s\"\n\
         assign = true\nname = \"node-1\"\n"
    );
    let control = bunsan_config::parse(&many, Path::new("b.toml")).expect("valid config").control.unwrap();
    assert_eq!(control.urls.len(), 2);
    assert_eq!(control.delivery, ControlDelivery::Periodic);
    assert_eq!(control.token, Some(Secret::new("sub-token")));
    assert!(control.assign);
    assert_eq!(control.name.as_deref(), Some("node-1"));
}

#[test]
fn upstream_protocols_proxy_protocol_and_access_logs() {
    let source = r#"
[node]
access_log = "logs/access.jsonl"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
pool = "grpc"
accept_proxy = true

[[pool]]
name = "grpc"
upstream = "h2"
upstream_tls = { ca = "ca.pem", server_name = "backend.internal", cert = "client.pem", key = "/k/client.key" }
send_proxy = "v2"

[[pool]]
name = "plain"
upstream = "h2c"
send_proxy = "v1"
"#;
    let config = bunsan_config::parse(source, Path::new("/etc/bunsan/b.toml")).expect("valid config");
    assert_eq!(config.node.access_log, Some(AccessLogTarget::File("/etc/bunsan/logs/access.jsonl".into())));
    assert!(config.listeners[0].accept_proxy);
    let grpc = &config.pools[0];
    assert_eq!(grpc.upstream, UpstreamProtocol::H2);
    let client_cert = Some(CertFiles { cert: "/etc/bunsan/client.pem".into(), key: "/k/client.key".into() });
    let server_name = Some("backend.internal".into());
    let tls = UpstreamTls { ca: "/etc/bunsan/ca.pem".into(), server_name, client_cert };
    assert_eq!(grpc.upstream_tls, Some(tls));
    assert_eq!(grpc.send_proxy, Some(ProxyVersion::V2));
    assert_eq!(
        (config.pools[1].upstream, config.pools[1].send_proxy),
        (UpstreamProtocol::H2c, Some(ProxyVersion::V1))
    );
    let stdout = source.replace("logs/access.jsonl", "stdout");
    let config = bunsan_config::parse(&stdout, Path::new("b.toml")).expect("valid config");
    assert_eq!(config.node.access_log, Some(AccessLogTarget::Stdout));
}

#[test]
fn listener_limits_node_connections_and_pool_body_limits_decode() {
    let source = "[node]\nmax_connections = 500\n\
        [[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\n\
        limits = { max_connections = 100, max_connections_per_client = 4, head_timeout = \"2s\", \
        idle_timeout = \"5s\", header_bytes = \"16KiB\", header_count = 20, uri_bytes = \"1KiB\", h2_max_streams = 8 }\n\
        [[pool]]\nname = \"p\"\nmax_body = \"1MiB\"\nresponse_header_bytes = \"32KiB\"\n";
    let config = bunsan_config::parse(source, Path::new("b.toml")).expect("valid config");
    assert_eq!(config.node.max_connections, 500);
    let limits = ListenerLimits {
        max_connections: 100,
        max_connections_per_client: 4,
        head_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(5),
        header_bytes: 16 * 1024,
        header_count: 20,
        uri_bytes: 1024,
        h2_max_streams: 8,
    };
    assert_eq!(config.listeners[0].limits, limits);
    assert_eq!((config.pools[0].max_body, config.pools[0].response_header_bytes), (Some(1 << 20), 32 * 1024));
}
