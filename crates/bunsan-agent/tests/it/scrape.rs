//! The `scrape` method against a real HTTP server.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bunsan_agent::observe::scrape::{Scrape, KEEP_FOR};

use crate::fake::Recorder;

#[tokio::test]
async fn scrapes_a_metric_keeps_it_through_short_failures_then_drops_it() {
    // 200 with the metric while `value` is set, 503 while it is 0.
    let value = Arc::new(AtomicU32::new(7));
    let page = value.clone();
    let handler = Arc::new(move |_: &str, _: &[u8]| match page.load(SeqCst) {
        0 => (503, "busy".to_owned()),
        n => (200, format!("# TYPE inflight gauge\ninflight{{route=\"/\"}} {n}\n")),
    });
    let server = Recorder::start_on("127.0.0.1:0".parse().unwrap(), handler).await;
    let url = format!("http://{}/metrics", server.addr).parse().unwrap();
    let mut scrape = Scrape::new(vec![Some(url), None], Some("inflight".into()), Duration::from_secs(5));

    let first = scrape.sample().await;
    assert_eq!((first[0].load, first[1].load), (Some(7.0), None));
    value.store(0, SeqCst);
    for _ in 0..KEEP_FOR {
        assert_eq!(scrape.sample().await[0].load, Some(7.0), "kept through a short failure");
    }
    assert_eq!(scrape.sample().await[0].load, None, "then no longer reported");
    value.store(9, SeqCst);
    assert_eq!(scrape.sample().await[0].load, Some(9.0));
    assert!(server.seen().iter().all(|s| s.path == "/metrics"));
}
