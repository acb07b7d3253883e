//! Every kind of config error, with its exact line, column, key and message.

use std::path::Path;

use bunsan_config::{ConfigError, ConfigErrors, ErrorKind};

/// A listener and a pool that are valid on their own, for tests about other tables.
/// Lines 1-7.
const BASE: &str = r#"[[listener]]
name = "web"
listen = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
algorithm = "least-load"
"#;

/// The errors in `source`, which must be rejected.
fn errors(source: &str) -> ConfigErrors {
    match bunsan_config::parse(source, Path::new("t.toml")) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(errors) => errors,
    }
}

/// The errors in `source`, each as `LINE:COL: KEY: MESSAGE`.
fn lines(source: &str) -> Vec<String> {
    errors(source).errors.iter().map(ConfigError::to_string).collect()
}

/// The single error in `source`.
fn only(source: &str) -> ConfigError {
    let mut all = errors(source).errors;
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// Asserts that `source` has exactly the errors `expected`.
fn check(source: &str, expected: &[&str]) {
    assert_eq!(lines(source), expected, "source:\n{source}");
}

#[test]
fn syntax_errors_are_reported_alone_with_their_position() {
    let error = only("[[listener]]\nname = \"web\nbogus = 1\n");
    assert_eq!((error.line, error.column, error.key.as_str()), (2, 12, ""));
    assert!(matches!(error.kind, ErrorKind::Syntax(_)));
    assert!(error.to_string().starts_with("2:12: TOML syntax error: "), "{error}");

    let error = only("a = 1\na = 2\n");
    assert_eq!((error.line, error.column), (2, 1));
    assert_eq!(error.kind, ErrorKind::Syntax("duplicate key".into()));
}

#[test]
fn display_names_the_file_and_puts_one_error_per_line() {
    let text = errors("[[pool]]\nname = 5\nbogus = 1\n").to_string();
    let expected = [
        "t.toml:2:8: pool[0].name: expected string, found integer",
        "t.toml:3:1: pool[0].bogus: unknown key (valid here: name, algorithm, hash_key, connect_timeout, response_timeout, idle_timeout, max_idle_per_server, affinity, health, outlier, retry, upstream, upstream_tls, send_proxy, max_body, response_header_bytes, server)",
        "t.toml:1:1: a node needs at least one [[listener]]",
    ];
    assert_eq!(text, expected.join("\n"));
}

#[test]
fn unknown_keys_point_at_the_key_and_list_the_valid_ones() {
    let source = format!(
        "{BASE}timeout = \"5s\"\n[[pool.server]]\nname = \"h1\"\naddr = \"127.0.0.1:1\"\nweight = 2\n[nod]\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:9\"\ntokn = \"x\"\n"
    );
    check(&source, &[
        "8:1: pool[app].timeout: unknown key (valid here: name, algorithm, hash_key, connect_timeout, response_timeout, idle_timeout, max_idle_per_server, affinity, health, outlier, retry, upstream, upstream_tls, send_proxy, max_body, response_header_bytes, server)",
        "12:1: pool[app].server[h1].weight: unknown key (valid here: name, addr, capacity, state)",
        "13:2: nod: unknown key (valid here: node, admin, listener, pool, control)",
        "17:1: admin.tokn: unknown key (valid here: listen, token)",
    ]);
    let error = only("[node]\nworker = 2\n[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\npool = \"p\"\n[[pool]]\nname = \"p\"\n");
    assert_eq!(
        error.kind,
        ErrorKind::UnknownKey {
            valid: "workers, shutdown_timeout, session_key, session_key_file, max_sessions, access_log, \
                max_connections"
                .into()
        }
    );
    assert_eq!((error.line, error.column, error.key.as_str()), (2, 1, "node.worker"));
}

#[test]
fn unknown_keys_in_listeners_and_tls() {
    let source = r#"[[listener]]
name = "web"
listen = "127.0.0.1:8443"
pool = "app"
tls = { cert = "c.pem", key = "k.pem", ca = "ca.pem" }
port = 1
[[pool]]
name = "app"
"#;
    check(
        source,
        &[
            "5:40: listener[web].tls.ca: unknown key (valid here: cert, key, sni)",
            "6:1: listener[web].port: unknown key (valid here: name, listen, protocol, pool, tls, accept_proxy, limits)",
        ],
    );
}

#[test]
fn missing_keys_point_at_the_start_of_their_table() {
    let source = r#"[[listener]]
name = "web"
[[pool]]
algorithm = "random"
[[pool.server]]
name = "h1"
[admin]
token = "0123456789abcdef"
"#;
    check(
        source,
        &[
            "1:1: listener[web].listen: missing required key",
            "1:1: listener[web].pool: missing required key",
            "3:1: pool[0].name: missing required key",
            "5:1: pool[0].server[h1].addr: missing required key",
            "7:1: admin.listen: missing required key",
        ],
    );
    let error = only(&format!("{BASE}[[listener]]\nlisten = \"127.0.0.1:1\"\npool = \"app\"\n"));
    assert_eq!(error.to_string(), "8:1: listener[1].name: missing required key");
    let error = only(&format!("{BASE}[[listener]]\nname = \"l2\"\nlisten = \"127.0.0.1:1\"\npool = \"app\"\ntls = {{ cert = \"c.pem\" }}\n"));
    assert_eq!(error.to_string(), "12:7: listener[l2].tls.key: missing required key");
    assert_eq!(error.kind, ErrorKind::Missing);
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    let source = format!(
        "{BASE}max_idle_per_server = 1.5\n[[pool.server]]\nname = \"h1\"\naddr = \"127.0.0.1:1\"\ncapacity = \"2\"\nstate = true\n[node]\nshutdown_timeout = 30\nworkers = [1]\n"
    );
    check(
        &source,
        &[
            "8:23: pool[app].max_idle_per_server: expected integer, found float",
            "12:12: pool[app].server[h1].capacity: expected integer, found string",
            "13:9: pool[app].server[h1].state: expected string, found boolean",
            "15:20: node.shutdown_timeout: expected duration string like \"5s\", found integer",
            "16:11: node.workers: expected integer, found array",
        ],
    );
    let error =
        only(&format!("{BASE}[[pool.server]]\nname = \"h\"\naddr = \"127.0.0.1:1\"\ncapacity = \"2\"\n"));
    assert_eq!(error.kind, ErrorKind::WrongType { expected: "integer", found: "string" });
    assert_eq!(error.key, "pool[app].server[h].capacity");
}

#[test]
fn tables_and_arrays_of_the_wrong_shape() {
    check("node = 5\nadmin = \"x\"\n[listener]\nname = \"l\"\n[[pool]]\nname = \"p\"\nserver = { name = \"s\" }\n", &[
        "1:8: node: expected table, found integer",
        "2:9: admin: expected table, found string",
        "3:1: listener: expected array of tables, found table",
        "7:10: pool[p].server: expected array of tables, found table",
    ]);
    check(
        &format!("{BASE}server = [1, {{ name = \"s\", addr = \"127.0.0.1:1\" }}, \"x\"]\n"),
        &[
            "8:11: pool[app].server[0]: expected table, found integer",
            "8:52: pool[app].server[2]: expected table, found string",
        ],
    );
}

#[test]
fn bad_durations() {
    let source = format!(
        "{BASE}connect_timeout = \"5x\"\nresponse_timeout = \"5\"\nidle_timeout = \"1.5s\"\n[node]\nshutdown_timeout = \"-1s\"\n"
    );
    let invalid = |line: &str, key: &str, text: &str| {
        format!("{line}: {key}: invalid duration \"{text}\": expected a number with a unit, like \"250ms\", \"5s\", \"2m\", \"1h\" or \"1m30s\"")
    };
    let expected = [
        invalid("8:19", "pool[app].connect_timeout", "5x"),
        invalid("9:20", "pool[app].response_timeout", "5"),
        invalid("10:16", "pool[app].idle_timeout", "1.5s"),
        invalid("12:20", "node.shutdown_timeout", "-1s"),
    ];
    assert_eq!(lines(&source), expected);
    let error = only(&format!("{BASE}connect_timeout = \"5x\"\n"));
    assert_eq!(error.kind, ErrorKind::InvalidDuration("5x".into()));
}

#[test]
fn pool_timeouts_must_be_positive() {
    check(
        &format!("{BASE}connect_timeout = \"0ms\"\nidle_timeout = \"0s\"\n"),
        &[
            "8:19: pool[app].connect_timeout: must be more than zero",
            "9:16: pool[app].idle_timeout: must be more than zero",
        ],
    );
}

#[test]
fn bad_addresses_say_why() {
    let source = r#"[[listener]]
name = "web"
listen = "localhost:8080"
pool = "app"
[[listener]]
name = "v6"
listen = "::1:8080"
pool = "app"
[[pool]]
name = "app"
[[pool.server]]
name = "a"
addr = "10.0.0.1"
[[pool.server]]
name = "b"
addr = "10.0.0.1:70000"
[[pool.server]]
name = "c"
addr = "no-such-host.invalid:80"
[[pool.server]]
name = "d"
addr = "10.0.0.1:0"
"#;
    let lines = lines(source);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert_eq!(lines[..4], [
        "3:10: listener[web].listen: invalid address \"localhost:8080\": \"localhost\" is not an IP address (listen addresses are literal, like \"0.0.0.0:8080\" or \"[::]:8080\")",
        "7:10: listener[v6].listen: invalid address \"::1:8080\": IPv6 addresses must be in brackets, like \"[::1]:8080\"",
        "13:8: pool[app].server[a].addr: invalid address \"10.0.0.1\": missing port (expected HOST:PORT)",
        "16:8: pool[app].server[b].addr: invalid address \"10.0.0.1:70000\": port 70000 is out of range (0..=65535)",
    ][..]);
    // The resolver's own words follow the prefix, and they vary by system.
    let prefix = "19:8: pool[app].server[c].addr: invalid address \"no-such-host.invalid:80\": cannot resolve host \"no-such-host.invalid\": ";
    assert!(lines[4].starts_with(prefix), "{}", lines[4]);
    assert_eq!(
        lines[5],
        "22:8: pool[app].server[d].addr: invalid address \"10.0.0.1:0\": port 0 cannot be connected to"
    );
}

#[test]
fn admin_listen_must_be_a_literal_address() {
    let error = only(&format!("{BASE}[admin]\nlisten = \"127.0.0.1\"\n"));
    let kind = ErrorKind::InvalidAddress {
        value: "127.0.0.1".into(),
        reason: "missing port (expected HOST:PORT)".into(),
    };
    assert_eq!((error.line, error.column, error.key.as_str(), error.kind), (9, 10, "admin.listen", kind));
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let source = r#"[[listener]]
name = "web"
listen = "127.0.0.1:80"
protocol = "https"
pool = "app"
[[pool]]
name = "app"
algorithm = "fastest"
[[pool.server]]
name = "h"
addr = "127.0.0.1:1"
state = "up"
[[pool]]
name = "hashed"
algorithm = "maglev"
hash_key = "query"
"#;
    check(source, &[
        "4:12: listener[web].protocol: unknown protocol \"https\" (valid: http, tcp)",
        "8:13: pool[app].algorithm: unknown algorithm \"fastest\" (valid: least-load, round-robin, least-conn, p2c-ewma, maglev, random)",
        "12:9: pool[app].server[h].state: unknown state \"up\" (valid: ready, drain, maint)",
        "16:12: pool[hashed].hash_key: unknown hash_key \"query\" (valid: header:NAME, cookie:NAME, client-ip, path)",
    ]);
}

#[test]
fn unknown_algorithm_carries_the_valid_list() {
    let error = only("[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\npool = \"app\"\n[[pool]]\nname = \"app\"\nalgorithm = \"fastest\"\n");
    let valid = "least-load, round-robin, least-conn, p2c-ewma, maglev, random".to_owned();
    assert_eq!(error.kind, ErrorKind::UnknownName { what: "algorithm", value: "fastest".into(), valid });
    assert_eq!((error.line, error.column, error.key.as_str()), (7, 13, "pool[app].algorithm"));
}

#[test]
fn listeners_must_name_an_existing_pool() {
    let error = only("[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"ap\"\n[[pool]]\nname = \"app\"\n[[pool]]\nname = \"db\"\n");
    assert_eq!(error.kind, ErrorKind::UnknownPool { name: "ap".into(), known: "app, db".into() });
    assert_eq!(error.to_string(), "4:8: listener[web].pool: no pool named \"ap\" (pools: app, db)");
    let error = only("[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"app\"\n");
    assert_eq!(error.to_string(), "4:8: listener[web].pool: no pool named \"app\" (pools: none)");
}

#[test]
fn a_pool_with_errors_still_counts_as_defined() {
    // Only the pool's own error: the listener naming it gets no second, misleading one.
    let error = only("[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"app\"\n[[pool]]\nname = \"app\"\ncapacity = 1\n");
    assert_eq!(error.key, "pool[app].capacity");
}

#[test]
fn duplicate_names_point_at_the_second_and_name_the_first_line() {
    let source = r#"[[listener]]
name = "web"
listen = "127.0.0.1:80"
pool = "app"
[[listener]]
name = "web"
listen = "127.0.0.1:81"
pool = "app"
[[pool]]
name = "app"
[[pool.server]]
name = "h1"
addr = "127.0.0.1:1"
[[pool.server]]
name = "h1"
addr = "127.0.0.1:2"
[[pool]]
name = "app"
[[pool.server]]
name = "h1"
addr = "127.0.0.1:1"
"#;
    check(
        source,
        &[
            "6:8: listener[web].name: duplicate listener name \"web\" (first at line 2)",
            "15:8: pool[app].server[h1].name: duplicate server name \"h1\" (first at line 12)",
            "18:8: pool[app].name: duplicate pool name \"app\" (first at line 10)",
        ],
    );
    let error = only(&format!("{BASE}[[pool]]\nname = \"app\"\n"));
    let kind = ErrorKind::Duplicate { what: "pool name", value: "app".into(), first_line: 6 };
    assert_eq!((error.line, error.column, error.kind), (9, 8, kind));
}

#[test]
fn duplicate_listen_addresses_across_listeners_and_admin() {
    let source = r#"[admin]
listen = "127.0.0.1:8080"
[[listener]]
name = "a"
listen = "127.0.0.1:8080"
pool = "app"
[[listener]]
name = "b"
listen = "[::]:9000"
pool = "app"
[[listener]]
name = "c"
listen = "[0::0]:9000"
pool = "app"
[[pool]]
name = "app"
"#;
    check(
        source,
        &[
            "5:10: listener[a].listen: duplicate listen address \"127.0.0.1:8080\" (first at line 2)",
            "13:10: listener[c].listen: duplicate listen address \"[::]:9000\" (first at line 9)",
        ],
    );
    // The admin table may come after the listener it clashes with.
    let error = only(&format!("{BASE}[admin]\nlisten = \"127.0.0.1:8080\"\n"));
    assert_eq!(
        error.to_string(),
        "9:10: admin.listen: duplicate listen address \"127.0.0.1:8080\" (first at line 3)"
    );
}

#[test]
fn integers_out_of_range() {
    let source = format!(
        "{BASE}max_idle_per_server = 100001\n[[pool.server]]\nname = \"h\"\naddr = \"127.0.0.1:1\"\ncapacity = 0\n[[pool.server]]\nname = \"i\"\naddr = \"127.0.0.1:2\"\ncapacity = 0x2711\n[node]\nworkers = 99999999999999999999\n"
    );
    check(
        &source,
        &[
            "8:23: pool[app].max_idle_per_server: 100001 is out of range (0..=100000)",
            "12:12: pool[app].server[h].capacity: 0 is out of range (1..=10000)",
            "16:12: pool[app].server[i].capacity: 0x2711 is out of range (1..=10000)",
            "18:11: node.workers: 99999999999999999999 is out of range (1..=1024)",
        ],
    );
    let error = only(&format!("{BASE}max_idle_per_server = -1\n"));
    assert_eq!(error.kind, ErrorKind::OutOfRange { value: "-1".into(), min: 0, max: 100_000 });
}

#[test]
fn invalid_names() {
    let source = r#"[[listener]]
name = "my web"
listen = "127.0.0.1:80"
pool = "a/b"
[[pool]]
name = "a/b"
[[pool.server]]
name = ".."
addr = "127.0.0.1:1"
[[pool.server]]
name = ""
addr = "127.0.0.1:1"
"#;
    let rule = "names are 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'";
    let expected = [
        format!("2:8: listener[0].name: invalid name \"my web\": {rule}"),
        "4:8: listener[0].pool: no pool named \"a/b\" (pools: none)".to_owned(),
        format!("6:8: pool[0].name: invalid name \"a/b\": {rule}"),
        "8:8: pool[0].server[0].name: invalid name \"..\": \".\" and \"..\" cannot appear in URLs".to_owned(),
        format!("11:8: pool[0].server[1].name: invalid name \"\": {rule}"),
    ];
    assert_eq!(lines(source), expected);
    let long = "x".repeat(65);
    let error = only(&format!("{BASE}[[pool]]\nname = \"{long}\"\n"));
    assert_eq!(error.kind, ErrorKind::Invalid(format!("invalid name \"{long}\": {rule}")));
}

#[test]
fn admin_tokens() {
    check(
        &format!("{BASE}[admin]\nlisten = \"0.0.0.0:9090\"\n"),
        &["8:1: admin.token: a token is required when the admin API listens on a non-loopback address"],
    );
    check(
        &format!("{BASE}[admin]\nlisten = \"[::]:9090\"\ntoken = \"short\"\n"),
        &["10:9: admin.token: token must be at least 16 characters"],
    );
    check(
        &format!("{BASE}[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"0123456789 abcdef\"\n"),
        &["10:9: admin.token: token must be visible ASCII characters (no spaces)"],
    );
}

#[test]
fn tls_rules() {
    let source = r#"[[listener]]
name = "raw"
listen = "127.0.0.1:5432"
protocol = "tcp"
pool = "app"
tls = { cert = "c.pem", key = "k.pem" }
[[listener]]
name = "web"
listen = "127.0.0.1:443"
pool = "app"
tls = { cert = "", key = 5 }
[[pool]]
name = "app"
"#;
    check(
        source,
        &[
            "6:7: listener[raw].tls: tls is only supported on http listeners",
            "11:16: listener[web].tls.cert: file path must not be empty",
            "11:26: listener[web].tls.key: expected string, found integer",
        ],
    );
}

#[test]
fn hash_key_rules() {
    let source = format!(
        "{BASE}hash_key = \"client-ip\"\n[[pool]]\nname = \"m\"\nalgorithm = \"maglev\"\nhash_key = \"header:\"\n[[pool]]\nname = \"n\"\nalgorithm = \"maglev\"\nhash_key = \"cookie:a;b\"\n"
    );
    check(
        &source,
        &[
            "8:12: pool[app].hash_key: hash_key is only used with algorithm = \"maglev\"",
            "12:12: pool[m].hash_key: missing header name after \"header:\"",
            "16:12: pool[n].hash_key: invalid cookie name \"a;b\": use letters, digits and !#$%&'*+-.^_`|~",
        ],
    );
    // Without an explicit algorithm the default (least-load) does not hash either.
    let error = only("[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nhash_key = \"path\"\n");
    assert_eq!(error.kind, ErrorKind::Invalid("hash_key is only used with algorithm = \"maglev\"".into()));
}

#[test]
fn down_is_not_a_config_state() {
    let error =
        only(&format!("{BASE}[[pool.server]]\nname = \"h\"\naddr = \"127.0.0.1:1\"\nstate = \"down\"\n"));
    assert_eq!(
        error.to_string(),
        "11:9: pool[app].server[h].state: state \"down\" is set by health checks, not by config"
    );
}

#[test]
fn a_node_needs_a_listener() {
    for source in ["", "[[pool]]\nname = \"app\"\n", "listener = []\n"] {
        let error = only(source);
        assert_eq!(error.to_string(), "1:1: a node needs at least one [[listener]]", "{source:?}");
        assert_eq!(error.kind, ErrorKind::Invalid("a node needs at least one [[listener]]".into()));
    }
}

#[test]
fn five_different_errors_are_all_reported_in_line_order() {
    let source = r#"[node]
workers = 0
[[listener]]
name = "web"
listen = "0.0.0.0:8080"
pool = "nope"
[[pool]]
name = "app"
algorithm = "fastest"
idle_timeout = "5x"
[[pool.server]]
name = "h1"
addr = "10.0.0.1:1"
colour = "blue"
"#;
    check(source, &[
        "2:11: node.workers: 0 is out of range (1..=1024)",
        "6:8: listener[web].pool: no pool named \"nope\" (pools: app)",
        "9:13: pool[app].algorithm: unknown algorithm \"fastest\" (valid: least-load, round-robin, least-conn, p2c-ewma, maglev, random)",
        "10:16: pool[app].idle_timeout: invalid duration \"5x\": expected a number with a unit, like \"250ms\", \"5s\", \"2m\", \"1h\" or \"1m30s\"",
        "14:1: pool[app].server[h1].colour: unknown key (valid here: name, addr, capacity, state)",
    ]);
}

#[test]
fn columns_count_characters_not_bytes() {
    let source = format!("{BASE}[[listener]]\nname = \"tls\"\nlisten = \"127.0.0.1:1\"\npool = \"app\"\ntls = {{ cert = \"cért.pem\", key = 5 }}\n");
    let error = only(&source);
    // "é" is two bytes: the byte offset would give column 35.
    assert_eq!((error.line, error.column, error.key.as_str()), (12, 34, "listener[tls].tls.key"));
}

#[test]
fn a_tcp_listener_cannot_feed_a_pool_hashing_on_the_http_request() {
    let source = r#"[[listener]]
name = "raw"
listen = "127.0.0.1:0"
protocol = "tcp"
pool = "users"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
pool = "users"
[[pool]]
name = "users"
algorithm = "maglev"
hash_key = "cookie:sid"
"#;
    check(
        source,
        &["5:8: listener[raw].pool: pool \"users\" reads its hash key or session identifier from HTTP requests; a tcp listener has only the client address (use \"client-ip\" or a separate pool)"],
    );
    let by_ip = source.replace("cookie:sid", "client-ip");
    assert!(bunsan_config::parse(&by_ip, Path::new("t.toml")).is_ok());
}

#[test]
fn affinity_mistakes_are_named() {
    let source = format!(
        "{BASE}affinity = {{ mode = \"sticky\" }}\n[[pool]]\nname = \"b\"\n\
         affinity = {{ mode = \"client-ip\", name = \"x\", idle_timeout = \"0s\" }}\n\
         [[pool]]\nname = \"c\"\naffinity = {{ mode = \"cookie\", name = \"a b\", ttl = \"1h\" }}\n"
    );
    check(
        &source,
        &[
            "8:21: pool[app].affinity.mode: unknown affinity mode \"sticky\" (valid: cookie, header, client-ip, none)",
            "11:41: pool[b].affinity.name: name is not used with mode = \"client-ip\"",
            "11:61: pool[b].affinity.idle_timeout: must be more than zero",
            "14:38: pool[c].affinity.name: invalid cookie name \"a b\": use letters, digits and !#$%&'*+-.^_`|~",
            "14:45: pool[c].affinity.ttl: unknown key (valid here: mode, name, idle_timeout, max_lifetime)",
        ],
    );
}

#[test]
fn session_key_mistakes_are_named_without_quoting_the_key() {
    let short = format!("[node]\nsession_key = \"short-secret\"\n{BASE}");
    check(&short, &["2:15: node.session_key: session_key must be at least 32 characters"]);
    let key = "k".repeat(32);
    let both = format!("[node]\nsession_key = \"{key}\"\nsession_key_file = \"k\"\n{BASE}");
    check(&both, &["1:1: node.session_key: set session_key or session_key_file, not both"]);
}

#[test]
fn a_tcp_listener_cannot_feed_a_pool_with_cookie_sessions() {
    let source =
        "[[listener]]\nname = \"raw\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"app\"\n\
                  [[pool]]\nname = \"app\"\naffinity = { mode = \"cookie\" }\n";
    let error = only(source).to_string();
    assert!(
        error.starts_with("5:8: listener[raw].pool: pool \"app\" reads its hash key or session identifier"),
        "{error}"
    );
}

#[test]
fn health_kind_rules() {
    let source = format!(
        "{BASE}health = {{ kind = \"ping\" }}\n[[pool]]\nname = \"b\"\nhealth = {{ path = \"/\" }}\n\
         [[pool]]\nname = \"c\"\nhealth = {{ kind = \"none\", interval = \"5s\", fall = 3 }}\n\
         [[pool]]\nname = \"d\"\nhealth = \"http\"\n"
    );
    check(
        &source,
        &[
            "8:19: pool[app].health.kind: unknown health check kind \"ping\" (valid: http, tcp, none)",
            "11:10: pool[b].health.kind: missing required key",
            "14:38: pool[c].health.interval: interval is not used with kind = \"none\"",
            "14:51: pool[c].health.fall: fall is not used with kind = \"none\"",
            "17:10: pool[d].health: expected table, found string",
        ],
    );
}

#[test]
fn http_keys_on_a_tcp_check_and_unknown_health_keys() {
    let source = format!(
        "{BASE}health = {{ kind = \"tcp\", path = \"/x\", host = \"h\", expect = \"200\", port = 80 }}\n"
    );
    check(
        &source,
        &[
            "8:33: pool[app].health.path: path is only used with kind = \"http\"",
            "8:46: pool[app].health.host: host is only used with kind = \"http\"",
            "8:60: pool[app].health.expect: expect is only used with kind = \"http\"",
            "8:67: pool[app].health.port: unknown key (valid here: kind, path, host, expect, interval, timeout, fall, rise)",
        ],
    );
}

#[test]
fn http_check_paths_hosts_and_status_ranges() {
    let source = format!(
        "{BASE}[pool.health]\nkind = \"http\"\npath = \"health\"\nhost = \"my host\"\nexpect = \"500-200\"\n\
         [[pool]]\nname = \"b\"\nhealth = {{ kind = \"http\", path = \"/a b\", host = \"\", expect = \"2xx\" }}\n\
         [[pool]]\nname = \"c\"\nhealth = {{ kind = \"http\", expect = \"200-600\" }}\n\
         [[pool]]\nname = \"d\"\nhealth = {{ kind = \"http\", expect = \"99\" }}\n"
    );
    let form = |text: &str| {
        format!("invalid status range \"{text}\": expected a code like \"200\" or a range like \"200-399\"")
    };
    check(
        &source,
        &[
            "10:8: pool[app].health.path: path must start with \"/\"",
            "11:8: pool[app].health.host: host must be visible ASCII characters (no spaces)",
            "12:10: pool[app].health.expect: status range \"500-200\" is empty: 500 is more than 200",
            "15:34: pool[b].health.path: path must be visible ASCII characters (no spaces; percent-encode others)",
            "15:49: pool[b].health.host: host must not be empty",
            &format!("15:62: pool[b].health.expect: {}", form("2xx")),
            "18:36: pool[c].health.expect: status 600 is out of range (100..=599)",
            &format!("21:36: pool[d].health.expect: {}", form("99")),
        ],
    );
}

#[test]
fn health_timing_rules() {
    let source = format!(
        "{BASE}health = {{ kind = \"tcp\", interval = \"2s\", timeout = \"3s\" }}\n\
         [[pool]]\nname = \"b\"\nhealth = {{ kind = \"http\", interval = \"500ms\" }}\n\
         [[pool]]\nname = \"c\"\nhealth = {{ kind = \"tcp\", interval = \"0s\", timeout = \"5\", fall = 0, rise = 101 }}\n"
    );
    check(
        &source,
        &[
            "8:53: pool[app].health.timeout: must not be more than interval (2s)",
            // With timeout left at its default, the interval is what was set too low.
            "11:38: pool[b].health.interval: must not be less than timeout (1s, the default)",
            "14:37: pool[c].health.interval: must be more than zero",
            "14:53: pool[c].health.timeout: invalid duration \"5\": expected a number with a unit, like \"250ms\", \"5s\", \"2m\", \"1h\" or \"1m30s\"",
            "14:65: pool[c].health.fall: 0 is out of range (1..=100)",
            "14:75: pool[c].health.rise: 101 is out of range (1..=100)",
        ],
    );
}

#[test]
fn outlier_rules() {
    let source = format!(
        "{BASE}outlier = {{ consecutive_failures = 1001, base_ejection = \"0s\", max_ejected_percent = 0, eject = true }}\n\
         [[pool]]\nname = \"b\"\noutlier = {{ base_ejection = \"1m\", max_ejection = \"30s\" }}\n\
         [[pool]]\nname = \"c\"\noutlier = {{ base_ejection = \"10m\" }}\n\
         [[pool]]\nname = \"d\"\noutlier = {{ consecutive_failures = 0, max_ejection = \"0s\" }}\n"
    );
    check(
        &source,
        &[
            "8:36: pool[app].outlier.consecutive_failures: 1001 is out of range (0..=1000)",
            "8:58: pool[app].outlier.base_ejection: must be more than zero",
            "8:86: pool[app].outlier.max_ejected_percent: 0 is out of range (1..=100)",
            "8:89: pool[app].outlier.eject: unknown key (valid here: consecutive_failures, base_ejection, max_ejection, max_ejected_percent)",
            "11:50: pool[b].outlier.max_ejection: must not be less than base_ejection (1m)",
            // With max_ejection left at its default, the base is what was set too high.
            "14:29: pool[c].outlier.base_ejection: must not be more than max_ejection (5m, the default)",
            // Switched off, the other keys are still checked.
            "17:54: pool[d].outlier.max_ejection: must be more than zero",
        ],
    );
}

#[test]
fn retry_rules() {
    let source = format!(
        "{BASE}retry = {{ attempts = 0, budget_percent = 101, min_retries_per_second = 100001, backoff = \"1s\" }}\n\
         [[pool]]\nname = \"b\"\nretry = {{ attempts = 11, buffer = \"1TiB\" }}\n"
    );
    check(
        &source,
        &[
            "8:22: pool[app].retry.attempts: 0 is out of range (1..=10)",
            "8:42: pool[app].retry.budget_percent: 101 is out of range (0..=100)",
            "8:72: pool[app].retry.min_retries_per_second: 100001 is out of range (0..=100000)",
            "8:80: pool[app].retry.backoff: unknown key (valid here: attempts, buffer, budget_percent, min_retries_per_second)",
            "11:22: pool[b].retry.attempts: 11 is out of range (1..=10)",
            "11:35: pool[b].retry.buffer: \"1TiB\" is out of range (0B..=64MiB)",
        ],
    );
}

#[test]
fn bad_sizes() {
    // Each line after BASE is a pool of its own: `retry = { buffer = ` puts values at column 20.
    let buffers = [
        "\"64 KiB\"",
        "\"1.5MiB\"",
        "\"-1\"",
        "-1",
        "\"64kb\"",
        "\"65536\"",
        "67108865",
        "1.5",
        "\"64KB\"",
        "\"64MiB\"",
    ];
    let mut source = BASE.to_owned();
    for (i, buffer) in buffers.iter().enumerate() {
        if i > 0 {
            source.push_str(&format!("[[pool]]\nname = \"p{i}\"\n"));
        }
        source.push_str(&format!("retry = {{ buffer = {buffer} }}\n"));
    }
    let invalid = |at: &str, text: &str, reason: &str| {
        format!("{at}: invalid size \"{text}\": {reason} (expected an integer and a unit, like \"64KiB\"; units: B, kB, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    };
    let expected = [
        invalid("8:20: pool[app].retry.buffer", "64 KiB", "spaces are not allowed"),
        invalid("11:20: pool[p1].retry.buffer", "1.5MiB", "fractions are not allowed; use a smaller unit"),
        invalid("14:20: pool[p2].retry.buffer", "-1", "sizes cannot be negative"),
        "17:20: pool[p3].retry.buffer: -1 is out of range (0B..=64MiB)".to_owned(),
        invalid("20:20: pool[p4].retry.buffer", "64kb", "unknown unit \"kb\""),
        invalid("23:20: pool[p5].retry.buffer", "65536", "missing unit"),
        "26:20: pool[p6].retry.buffer: 67108865 is out of range (0B..=64MiB)".to_owned(),
        "29:20: pool[p7].retry.buffer: expected size (an integer number of bytes or a string like \"64KiB\"), found float".to_owned(),
    ];
    assert_eq!(lines(&source), expected, "source:\n{source}");
    let error = only(&format!("{BASE}retry = {{ buffer = \"1.5MiB\" }}\n"));
    let reason = "fractions are not allowed; use a smaller unit".to_owned();
    assert_eq!(error.kind, ErrorKind::InvalidSize { value: "1.5MiB".into(), reason });
}

#[test]
fn health_and_retry_mistakes_are_all_reported_with_the_file() {
    let source = r#"[[listener]]
name = "web"
listen = "127.0.0.1:8080"
pool = "app"

[[pool]]
name = "app"
health = { kind = "http", path = "healthz", expect = "500-200", interval = "1s", timeout = "2s", rise = 0 }
retry = { attempts = 20, buffer = "64 KiB", budget = 10 }
"#;
    let text = errors(source).to_string();
    let expected = [
        "t.toml:8:34: pool[app].health.path: path must start with \"/\"",
        "t.toml:8:54: pool[app].health.expect: status range \"500-200\" is empty: 500 is more than 200",
        "t.toml:8:92: pool[app].health.timeout: must not be more than interval (1s)",
        "t.toml:8:105: pool[app].health.rise: 0 is out of range (1..=100)",
        "t.toml:9:22: pool[app].retry.attempts: 20 is out of range (1..=10)",
        "t.toml:9:35: pool[app].retry.buffer: invalid size \"64 KiB\": spaces are not allowed (expected an integer and a unit, like \"64KiB\"; units: B, kB, KB, MB, GB, TB, KiB, MiB, GiB, TiB)",
        "t.toml:9:45: pool[app].retry.budget: unknown key (valid here: attempts, buffer, budget_percent, min_retries_per_second)",
    ];
    assert_eq!(text, expected.join("\n"));
}

#[test]
fn control_mistakes_are_named() {
    let source = format!(
        "{BASE}[control]\nurl = [\"https://c:1\", \"http://c\", \"http://c:1/v1\"]\ndelivery = \"sometimes\"\nassign = \"yes\"\n"
    );
    check(
        &source,
        &[
            "9:8: control.url[0]: \"https://c:1\" is not an http:// URL (like \"http://127.0.0.1:9800\")",
            "9:23: control.url[1]: \"http://c\" must be http://HOST:PORT, without a path",
            "9:35: control.url[2]: \"http://c:1/v1\" must be http://HOST:PORT, without a path",
            "10:12: control.delivery: unknown delivery \"sometimes\" (valid: change, periodic, pull)",
            "11:10: control.assign: expected boolean, found string",
        ],
    );
    check(&format!("{BASE}[control]\n"), &["8:1: control.url: missing required key"]);
}

#[test]
fn upstream_mistakes_are_named() {
    let source =
        format!("{BASE}upstream = \"h3\"\n[[pool]]\nname = \"b\"\nupstream = \"h2\"\nsend_proxy = \"v3\"\n");
    check(
        &source,
        &[
            "8:12: pool[app].upstream: unknown upstream protocol \"h3\" (valid: http1, h2c, h2)",
            "11:12: pool[b].upstream: upstream = \"h2\" needs upstream_tls = { ca = \"…\" }",
            "12:14: pool[b].send_proxy: unknown PROXY protocol version \"v3\" (valid: v1, v2, none)",
        ],
    );
}

#[test]
fn limits_are_checked_by_key_and_line() {
    let source = "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\n\
        limits = { header_bytes = \"1KiB\", h2_max_streams = 0, max_conn = 3 }\n\
        [[pool]]\nname = \"p\"\nmax_body = \"lots\"\n";
    let errors = bunsan_config::parse(source, Path::new("b.toml")).unwrap_err();
    let keys: Vec<(&str, usize)> = errors.errors.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert!(keys.contains(&("listener[l].limits.header_bytes", 5)), "{keys:?}");
    assert!(keys.contains(&("listener[l].limits.h2_max_streams", 5)), "{keys:?}");
    assert!(keys.contains(&("listener[l].limits.max_conn", 5)), "{keys:?}");
    assert!(keys.contains(&("pool[p].max_body", 8)), "{keys:?}");
    assert!(errors.to_string().contains("at least 8KiB"), "{errors}");
}

#[test]
fn an_upstream_client_certificate_needs_its_key() {
    let source = "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\n\
        [[pool]]\nname = \"p\"\nupstream_tls = { ca = \"ca.pem\", cert = \"c.pem\" }\n";
    let errors = bunsan_config::parse(source, Path::new("b.toml")).unwrap_err();
    assert_eq!(errors.errors.len(), 1, "{errors}");
    assert_eq!((errors.errors[0].key.as_str(), errors.errors[0].line), ("pool[p].upstream_tls", 7));
    assert!(errors.to_string().contains("cert and key go together"), "{errors}");
}
