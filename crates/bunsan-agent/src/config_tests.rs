//! Tests of the configuration: flags syntax, the TOML file, overlaying and validation.

use std::path::Path;

use super::*;

fn flags(servers: &[&str]) -> PartialConfig {
    PartialConfig {
        name: Some("agent1".into()),
        control: Some(vec!["http://127.0.0.1:7070".into()]),
        servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
        ..PartialConfig::default()
    }
}

fn error_of(config: PartialConfig) -> String {
    config.finish().unwrap_err().to_string()
}

#[test]
fn server_flags_parse_and_validate() {
    let entry: ServerEntry = "app/host1=127.0.0.1:9001".parse().unwrap();
    assert_eq!(
        (entry.pool.as_str(), entry.server.as_str(), entry.addr.as_str()),
        ("app", "host1", "127.0.0.1:9001")
    );
    assert!("app/host1=[::1]:80".parse::<ServerEntry>().is_ok());
    assert!("app-host1=127.0.0.1:9001".parse::<ServerEntry>().unwrap_err().contains("POOL/SERVER=IP:PORT"));
    assert!("app/host 1=127.0.0.1:9001".parse::<ServerEntry>().unwrap_err().contains("server:"));
    assert!("app/host1=localhost:80".parse::<ServerEntry>().unwrap_err().contains("not IP:PORT"));
    assert!("/host1=127.0.0.1:80".parse::<ServerEntry>().unwrap_err().contains("pool:"));
}

#[test]
fn defaults_are_applied() {
    let config = flags(&["app/b1=127.0.0.1:9001"]).finish().unwrap();
    assert_eq!(config.method, Method::Sockets);
    assert_eq!(config.interval, Duration::from_secs(1));
    assert_eq!(config.probe_interval, Duration::from_secs(1));
    assert_eq!(config.probe, Probe::Tcp);
    assert_eq!((config.fall, config.rise), (2, 2));
    assert_eq!(config.servers[0].addr, "127.0.0.1:9001".parse().unwrap());
    let unnamed = PartialConfig { name: None, ..flags(&["app/b1=127.0.0.1:9001"]) };
    // The host name, when it is a valid name (it is on any sane test machine).
    if let Ok(config) = unnamed.finish() {
        assert!(!config.name.is_empty());
    }
}

#[test]
fn probes_and_methods_parse() {
    assert_eq!("none".parse::<Probe>(), Ok(Probe::None));
    assert_eq!("http:/healthz".parse::<Probe>(), Ok(Probe::Http { path: "/healthz".into() }));
    assert!("http:healthz".parse::<Probe>().is_err());
    assert!("icmp".parse::<Probe>().is_err());
    assert_eq!("packets".parse::<Method>(), Ok(Method::Packets));
    assert!("magic".parse::<Method>().unwrap_err().contains("sockets, packets, scrape"));
}

#[test]
fn the_file_is_strict_and_errors_name_the_key() {
    let path = Path::new("agent.toml");
    let text = "control = [\"http://c:7070\"]\nintervall = \"1s\"\n";
    let error = PartialConfig::from_toml(text, path).unwrap_err().to_string();
    assert!(error.contains("intervall") && error.contains("line 2"), "{error}");
    let error = PartialConfig::from_toml("interval = \"5\"\n", path).unwrap_err().to_string();
    assert!(error.contains("interval") && error.contains("unit"), "{error}");
    let error = PartialConfig::from_toml("method = \"magic\"\n", path).unwrap_err().to_string();
    assert!(error.contains("method") && error.contains("unknown method"), "{error}");
    let error = PartialConfig::from_toml("[[server]]\npool = \"a\"\nserver = \"b\"\n", path).unwrap_err();
    assert!(error.to_string().contains("addr"), "{error}");
}

#[test]
fn a_full_file_loads_and_flags_win() {
    let text = r#"
        name = "web1"
        control = ["http://10.0.0.5:7070", "http://10.0.0.6:7070/prefix"]
        token = "secret"
        method = "scrape"
        interval = "500ms"
        probe = "http:/healthz"
        probe_interval = "2s"
        fall = 3
        rise = 1
        scrape_url = "http://{host}:9100/metrics?port={port}"
        scrape_metric = "inflight"

        [[server]]
        pool = "app"
        server = "b1"
        addr = "10.0.0.1:80"

        [[server]]
        pool = "app"
        server = "b2"
        addr = "[fd00::2]:80"
        scrape_url = "http://10.0.0.9/load"
    "#;
    let file = PartialConfig::from_toml(text, Path::new("agent.toml")).unwrap();
    let config = file.clone().finish().unwrap();
    assert_eq!(config.control.len(), 2);
    assert_eq!((config.fall, config.rise, config.interval), (3, 1, Duration::from_millis(500)));
    let urls: Vec<String> =
        config.servers.iter().map(|s| s.scrape_url.as_ref().unwrap().to_string()).collect();
    assert_eq!(urls, ["http://10.0.0.1:9100/metrics?port=80", "http://10.0.0.9/load"]);
    let top = PartialConfig {
        name: Some("other".into()),
        interval: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let merged = file.overlay(top).finish().unwrap();
    assert_eq!((merged.name.as_str(), merged.interval), ("other", Duration::from_secs(3)));
    assert_eq!(merged.token.as_deref(), Some("secret"));
    assert_eq!(merged.servers.len(), 2);
}

#[test]
fn validation_names_what_is_wrong() {
    assert!(error_of(flags(&[])).starts_with("server: at least one"));
    let no_control = PartialConfig { control: None, ..flags(&["a/b=127.0.0.1:1"]) };
    assert!(error_of(no_control).starts_with("control:"));
    let https = PartialConfig { control: Some(vec!["https://c:7070".into()]), ..flags(&["a/b=127.0.0.1:1"]) };
    assert!(error_of(https).contains("http://HOST:PORT"));
    assert!(error_of(flags(&["a/b=127.0.0.1:1", "a/b=127.0.0.1:2"])).contains("listed twice"));
    let bad_name = PartialConfig { name: Some("my agent".into()), ..flags(&["a/b=127.0.0.1:1"]) };
    assert!(error_of(bad_name).starts_with("name:"));
    let fast = PartialConfig { interval: Some(Duration::from_millis(1)), ..flags(&["a/b=127.0.0.1:1"]) };
    assert!(error_of(fast).starts_with("interval:"));
    let fall = PartialConfig { fall: Some(0), ..flags(&["a/b=127.0.0.1:1"]) };
    assert!(error_of(fall).starts_with("fall:"));
    let token = PartialConfig { token: Some("a b".into()), ..flags(&["a/b=127.0.0.1:1"]) };
    assert!(error_of(token).starts_with("token:"));
}

#[test]
fn scrape_settings_are_checked() {
    let scrape = |url: Option<&str>, metric: Option<&str>, servers: &[&str]| PartialConfig {
        method: Some(Method::Scrape),
        scrape_url: url.map(str::to_owned),
        scrape_metric: metric.map(str::to_owned),
        ..flags(servers)
    };
    assert!(error_of(scrape(None, None, &["a/b=127.0.0.1:1"])).contains("needs a URL"));
    let same = scrape(Some("http://127.0.0.1:9100/metrics"), None, &["a/b=127.0.0.1:1", "a/c=127.0.0.1:2"]);
    assert!(error_of(same).contains("would both read"));
    assert!(
        error_of(scrape(Some("http://{addr}/m"), Some("1bad"), &["a/b=127.0.0.1:1"])).contains("metric name")
    );
    let config = scrape(Some("http://{addr}/m"), Some("up:ratio"), &["a/b=[::1]:1"]).finish().unwrap();
    assert_eq!(config.servers[0].scrape_url.as_ref().unwrap().to_string(), "http://[::1]:1/m");
    let not_scrape =
        PartialConfig { scrape_url: Some("http://{addr}/m".into()), ..flags(&["a/b=127.0.0.1:1"]) };
    assert!(error_of(not_scrape).starts_with("scrape_url: is only for method scrape"));
}
