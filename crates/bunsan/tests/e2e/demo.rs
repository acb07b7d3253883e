//! `bunsan demo`: the README's first command.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_traffic_reports_where_it_went_and_stops_on_ctrl_c() {
    let mut child = tokio::process::Command::new(bin())
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let busy_second = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.trim().strip_prefix("try:") {
                url = Some(rest.trim().trim_start_matches("curl ").to_owned());
            }
            let busy = line.contains("req/s") && !line.contains("    0 req/s");
            if busy && line.contains("alpha") && line.contains("gamma") {
                return line;
            }
        }
        panic!("demo output ended");
    })
    .await
    .expect("a second with traffic within 30 s");
    assert!(busy_second.contains('%'), "{busy_second}");

    let url = url.expect("the demo prints a URL to try");
    let addr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let reply = bunsan_testkit::get(addr, "/from-test").await.unwrap();
    assert!(reply.text().starts_with("hello from "), "{}", reply.text());

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
