//! `parse` never panics, whatever it is given, and its errors are always well-formed.

use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// A valid config touching every table. Server addresses are literal IPs so that mutations
/// elsewhere never turn one into a host name and make the test wait on DNS.
const VALID: &str = r#"[node]
workers = 2
shutdown_timeout = "10s"

[admin]
listen = "127.0.0.1:9090"
token = "0123456789abcdef"

[[listener]]
name = "web"
listen = "0.0.0.0:8080"
protocol = "http"
pool = "app"
tls = { cert = "c.pem", key = "k.pem" }

[[listener]]
name = "raw"
listen = "[::]:5432"
protocol = "tcp"
pool = "db"

[[pool]]
name = "app"
algorithm = "maglev"
hash_key = "header:x-user"
connect_timeout = "1s"
max_idle_per_server = 8
health = { kind = "http", path = "/health", host = "app", expect = "200-299", timeout = "500ms" }
outlier = { consecutive_failures = 3, base_ejection = "5s", max_ejection = "1m" }
retry = { attempts = 2, buffer = "16KiB", budget_percent = 10 }

[[pool.server]]
name = "h1"
addr = "10.0.0.1:80"
capacity = 2
state = "drain"

[[pool]]
name = "db"
[[pool.server]]
name = "primary"
addr = "10.0.0.2:5432"
"#;

/// Table headers for generated configs (some repeat badly or are unknown, on purpose).
const HEADERS: &[&str] = &[
    "[[listener]]",
    "[[listener]]",
    "[[pool]]",
    "[[pool]]",
    "[[pool.server]]",
    "[[pool.server]]",
    "[node]",
    "[admin]",
    "[listener.tls]",
    "[pool.health]",
    "[pool.retry]",
    "[[bogus]]",
];

/// Keys and values for generated configs: valid values, edge cases and wrong types.
const KEYS: &[&str] = &[
    "name",
    "listen",
    "pool",
    "protocol",
    "tls",
    "algorithm",
    "hash_key",
    "addr",
    "capacity",
    "state",
    "workers",
    "shutdown_timeout",
    "token",
    "connect_timeout",
    "max_idle_per_server",
    "server",
    "cert",
    "key",
    "health",
    "outlier",
    "retry",
    "kind",
    "path",
    "expect",
    "interval",
    "timeout",
    "fall",
    "base_ejection",
    "max_ejection",
    "attempts",
    "buffer",
    "bogus",
];
const VALUES: &[&str] = &[
    "\"a\"",
    "\"b\"",
    "\"..\"",
    "\"\"",
    "\"127.0.0.1:0\"",
    "\"127.0.0.1:80\"",
    "\"0.0.0.0:9\"",
    "\"[::1]:0\"",
    "\"10.0.0.1\"",
    "\"tcp\"",
    "\"maglev\"",
    "\"cookie:\"",
    "\"header:X\"",
    "\"down\"",
    "\"drain\"",
    "\"5x\"",
    "\"0s\"",
    "\"1h1m\"",
    "\"0123456789abcdef\"",
    "\"é\"",
    "0",
    "1",
    "-1",
    "0x7fffffffffffffff",
    "1.5",
    "true",
    "1979-05-27",
    "[]",
    "[1]",
    "{}",
    "{ cert = \"c\", key = \"k\" }",
    "[{ name = \"s\", addr = \"10.0.0.1:1\" }]",
    "\"http\"",
    "\"none\"",
    "\"/\"",
    "\"500-200\"",
    "\"200\"",
    "\"64KiB\"",
    "\"1.5MiB\"",
    "\"1TiB\"",
    "{ kind = \"tcp\", path = \"/\" }",
    "{ kind = \"none\", fall = 1 }",
    "{ kind = \"http\", interval = \"1s\", timeout = \"2s\" }",
    "{ consecutive_failures = 0, base_ejection = \"1h\" }",
    "{ buffer = 18446744073709551615, attempts = 0 }",
];

/// One generated table: a header and key/value pairs (indexes into `KEYS`, `VALUES`).
type Section = (&'static str, Vec<(usize, Index)>);

fn section() -> impl Strategy<Value = Section> {
    (select(HEADERS), vec((0..KEYS.len(), any::<Index>()), 0..6))
}

/// Renders sections as TOML, each key at most once per table so most files get past the
/// TOML parser and into the decoder.
fn render(sections: &[Section]) -> String {
    let mut out = String::new();
    for (header, pairs) in sections {
        out.push_str(header);
        out.push('\n');
        let mut used = Vec::new();
        for (key, value) in pairs {
            if !used.contains(key) {
                used.push(*key);
                out.push_str(&format!("{} = {}\n", KEYS[*key], VALUES[value.index(VALUES.len())]));
            }
        }
    }
    out
}

/// Byte offsets of the characters a mutation may replace: all but those on `addr` lines.
fn mutable_offsets() -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut line_start = 0;
    for line in VALID.split_inclusive('\n') {
        if !line.starts_with("addr") {
            offsets.extend(line.char_indices().map(|(i, _)| line_start + i));
        }
        line_start += line.len();
    }
    offsets
}

/// `VALID` with the characters at the chosen offsets replaced.
fn mutate(edits: &[(Index, char)]) -> String {
    let offsets = mutable_offsets();
    let mut chars: Vec<(usize, char)> = VALID.char_indices().collect();
    for (index, replacement) in edits {
        let offset = offsets[index.index(offsets.len())];
        if let Some(slot) = chars.iter_mut().find(|(at, _)| *at == offset) {
            slot.1 = *replacement;
        }
    }
    chars.into_iter().map(|(_, c)| c).collect()
}

/// Parses `source` and checks that errors, if any, are non-empty, positioned inside the
/// file (1-based) and in the documented order.
fn parse_checked(source: &str) -> Result<(), TestCaseError> {
    let Err(errors) = bunsan_config::parse(source, Path::new("fuzz.toml")) else {
        return Ok(());
    };
    let lines = source.split('\n').count();
    prop_assert!(!errors.errors.is_empty());
    for error in &errors.errors {
        prop_assert!(error.line >= 1 && error.line <= lines, "{error:?}");
        prop_assert!(error.column >= 1, "{error:?}");
    }
    let order: Vec<_> = errors.errors.iter().map(|e| (e.key.is_empty(), e.line, e.column)).collect();
    prop_assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    prop_assert!(!errors.to_string().is_empty());
    Ok(())
}

#[test]
fn the_base_config_is_valid() {
    bunsan_config::parse(VALID, Path::new("fuzz.toml")).expect("VALID must be valid");
}

fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        any::<char>(),
        select(vec![
            '"', '\'', '[', ']', '{', '}', '=', ',', '.', '#', '\n', '\r', ' ', '0', '9', 'x', ':', 'é'
        ]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        parse_checked(&source)?;
    }

    #[test]
    fn generated_configs_never_panic(sections in vec(section(), 0..8)) {
        parse_checked(&render(&sections))?;
    }

    #[test]
    fn mutated_valid_config_never_panics(edits in vec((any::<Index>(), interesting_char()), 1..5)) {
        parse_checked(&mutate(&edits))?;
    }
}
