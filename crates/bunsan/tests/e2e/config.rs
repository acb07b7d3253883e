//! `bunsan check` and `bunsan serve` on good and bad configs.

use std::path::Path;

use crate::run;

const BAD: &str = r#"[node]
shutdown_timeout = "5x"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
pool = "ap"

[[pool]]
name = "app"
algorithm = "fastest"
colour = "blue"

[[pool.server]]
name = "host1"
addr = "127.0.0.1:99999"

[[pool.server]]
name = "host1"
addr = "127.0.0.1:9002"
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn check_names_the_key_and_line_of_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.toml", BAD);
    let out = run(&["check", "-c", &path]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = [
        format!("{path}:2:20: node.shutdown_timeout: invalid duration \"5x\""),
        format!("{path}:7:8: listener[web].pool: no pool named \"ap\" (pools: app)"),
        format!("{path}:11:13: pool[app].algorithm: unknown algorithm \"fastest\" (valid: least-load, round-robin, least-conn, p2c-ewma, maglev, random)"),
        format!("{path}:12:1: pool[app].colour: unknown key"),
        format!("{path}:16:8: pool[app].server[host1].addr: invalid address \"127.0.0.1:99999\""),
        format!("{path}:19:8: pool[app].server[host1].name: duplicate server name \"host1\" (first at line 15)"),
    ];
    for line in &expected {
        assert!(stderr.lines().any(|l| l.starts_with(line.as_str())), "missing {line:?} in:\n{stderr}");
    }
    assert_eq!(stderr.lines().count(), expected.len(), "{stderr}");
}

#[tokio::test]
async fn serve_refuses_a_bad_config_and_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.toml", BAD);
    let out = run(&["serve", "-c", &path]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown algorithm \"fastest\""));
}

#[tokio::test]
async fn check_reports_missing_files_and_tls_files_that_do_not_load() {
    let out = run(&["check", "-c", "/nonexistent/bunsan.toml"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file /nonexistent/bunsan.toml"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let config = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\npool = \"app\"\n\
                  tls = { cert = \"cert.pem\", key = \"key.pem\" }\n[[pool]]\nname = \"app\"\n";
    let path = write(dir.path(), "tls.toml", config);
    let out = run(&["check", "-c", &path]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS setup for listener web failed") && stderr.contains("cert.pem"), "{stderr}");
}

#[tokio::test]
async fn every_example_config_is_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = run(&["check", "-c", &path.to_string_lossy()]).await;
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected the example configs in {}", examples.display());
}
