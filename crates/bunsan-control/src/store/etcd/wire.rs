//! The JSON of etcd's v3 gateway: the requests this store sends and the answers it reads.
//! Pure data, so every answer shape can be tested from captured samples.
//!
//! The gateway speaks proto3 JSON: 64-bit integers are strings, keys and values are
//! base64, and fields at their zero value are left out (a `PUT` event has no `type`, an
//! empty value no `value`).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::base64;

/// One key as etcd holds it, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The whole key, prefix included.
    pub key: Vec<u8>,
    /// The value (empty for a deletion).
    pub value: Vec<u8>,
    /// The revision that last wrote (or deleted) it.
    pub mod_revision: i64,
    /// The lease it is attached to; 0 for none.
    pub lease: i64,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Written.
    Put,
    /// Deleted, or its lease expired.
    Delete,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the event.
    pub kv: KeyValue,
}

/// The answer to a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The store's revision the read saw.
    pub revision: i64,
    /// The keys found.
    pub kvs: Vec<KeyValue>,
}

/// One message of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is in place.
    Created,
    /// Keys changed (possibly none: a progress notice).
    Events(Vec<Event>),
    /// etcd ended the watch, e.g. because its start revision was compacted away.
    Canceled(String),
}

#[derive(Debug, Default, Deserialize)]
struct RawHeader {
    #[serde(default, deserialize_with = "int")]
    revision: i64,
}

#[derive(Debug, Deserialize)]
struct RawKv {
    key: Option<String>,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "int")]
    lease: i64,
}

#[derive(Debug, Deserialize)]
struct RawRange {
    #[serde(default)]
    header: RawHeader,
    #[serde(default)]
    kvs: Vec<RawKv>,
}

#[derive(Debug, Deserialize)]
struct RawGrant {
    #[serde(rename = "ID", default, deserialize_with = "int")]
    id: i64,
    #[serde(rename = "error", default)]
    error: String,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    kv: Option<RawKv>,
}

#[derive(Debug, Default, Deserialize)]
struct RawWatchResult {
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "int")]
    compact_revision: i64,
    #[serde(default)]
    cancel_reason: String,
    #[serde(default)]
    events: Vec<RawEvent>,
}

/// A 64-bit integer written as a string (proto3 JSON) or, leniently, as a number.
fn int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(deserializer)? {
        Int::Number(n) => Ok(n),
        Int::Text(text) => text.parse().map_err(|_| D::Error::custom(format!("{text:?} is not an integer"))),
    }
}

impl RawKv {
    fn decode(self) -> Result<KeyValue, String> {
        let key = base64::decode(self.key.as_deref().ok_or("a key-value without a key")?)
            .map_err(|e| format!("key: {e}"))?;
        let value = base64::decode(&self.value).map_err(|e| format!("value: {e}"))?;
        if self.mod_revision <= 0 {
            return Err(format!("key {:?} has no mod_revision", String::from_utf8_lossy(&key)));
        }
        Ok(KeyValue { key, value, mod_revision: self.mod_revision, lease: self.lease })
    }
}

/// Reads an answer as `T`, naming what did not fit.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{e} in {}", excerpt(body)))
}

/// The start of a body, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// The revision a write (put, delete, txn) was made at.
pub fn write_revision(body: &[u8]) -> Result<i64, String> {
    #[derive(Deserialize)]
    struct Answer {
        header: Option<RawHeader>,
    }
    let answer: Answer = parse(body)?;
    match answer.header {
        Some(header) if header.revision > 0 => Ok(header.revision),
        _ => Err(format!("no revision in {}", excerpt(body))),
    }
}

/// The key-values of a range read, and the revision it saw.
pub fn range(body: &[u8]) -> Result<Range, String> {
    let raw: RawRange = parse(body)?;
    if raw.header.revision <= 0 {
        return Err(format!("no revision in {}", excerpt(body)));
    }
    let kvs = raw.kvs.into_iter().map(RawKv::decode).collect::<Result<_, _>>()?;
    Ok(Range { revision: raw.header.revision, kvs })
}

/// The id of a granted lease.
pub fn lease(body: &[u8]) -> Result<i64, String> {
    let raw: RawGrant = parse(body)?;
    if !raw.error.is_empty() {
        return Err(raw.error);
    }
    if raw.id == 0 {
        return Err(format!("no lease ID in {}", excerpt(body)));
    }
    Ok(raw.id)
}

/// The message of an error answer (`{"error": …, "message": …, "code": n}`), else its start.
pub fn error_message(body: &[u8]) -> String {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let field =
        |name: &str| value.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_owned);
    field("message").or_else(|| field("error")).unwrap_or_else(|| excerpt(body))
}

/// Reads one message of a watch stream.
pub fn watch_message(value: Value) -> Result<WatchMessage, String> {
    if let Some(error) = value.get("error") {
        let message = error.get("message").and_then(Value::as_str).map(str::to_owned);
        return Err(message.unwrap_or_else(|| error.to_string()));
    }
    let Some(result) = value.get("result") else {
        return Err(format!("a watch message without a result: {}", excerpt(value.to_string().as_bytes())));
    };
    let result = RawWatchResult::deserialize(result).map_err(|e| format!("watch result: {e}"))?;
    if result.canceled || result.compact_revision > 0 {
        let why = match (result.compact_revision, result.cancel_reason.as_str()) {
            (0, "") => "canceled by etcd".to_owned(),
            (0, reason) => format!("canceled by etcd: {reason}"),
            (revision, _) => format!("revisions up to {revision} were compacted away"),
        };
        return Ok(WatchMessage::Canceled(why));
    }
    if result.created {
        return Ok(WatchMessage::Created);
    }
    result.events.into_iter().map(event).collect::<Result<_, _>>().map(WatchMessage::Events)
}

fn event(raw: RawEvent) -> Result<Event, String> {
    let kind = match raw.kind.as_deref() {
        None | Some("PUT") => EventKind::Put,
        Some("DELETE") => EventKind::Delete,
        Some(other) => return Err(format!("unknown watch event type {other:?}")),
    };
    let kv = raw.kv.ok_or("a watch event without a kv")?.decode()?;
    Ok(Event { kind, kv })
}

/// The end of the key range holding every key that starts with `prefix`: the prefix
/// with its last byte incremented (trailing `0xff` bytes dropped first).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): etcd reads "\0" as "to the end of the keyspace".
    vec![0]
}

/// `kv/range` over every key under `prefix`; `count_only` asks for the count alone.
pub fn range_request(prefix: &[u8], count_only: bool) -> Value {
    json!({
        "key": base64::encode(prefix),
        "range_end": base64::encode(&prefix_end(prefix)),
        "count_only": count_only,
    })
}

/// `kv/put` of one key, without a lease (durable).
pub fn put_request(key: &[u8], value: &[u8]) -> Value {
    json!({"key": base64::encode(key), "value": base64::encode(value)})
}

/// `kv/deleterange` of one key.
pub fn delete_request(key: &[u8]) -> Value {
    json!({"key": base64::encode(key)})
}

/// `lease/grant` of a lease living `ttl_secs` seconds.
pub fn grant_request(ttl_secs: i64) -> Value {
    json!({"TTL": ttl_secs.to_string()})
}

/// `kv/txn` writing every `(key, value)` with `lease`, atomically.
pub fn put_all_request(entries: &[(Vec<u8>, Vec<u8>)], lease: i64) -> Value {
    let puts: Vec<Value> = entries
        .iter()
        .map(|(key, value)| {
            json!({"request_put": {
                "key": base64::encode(key),
                "value": base64::encode(value),
                "lease": lease.to_string(),
            }})
        })
        .collect();
    json!({"success": puts})
}

/// `watch` of every key under `prefix` from `start_revision` on.
pub fn watch_request(prefix: &[u8], start_revision: i64) -> Value {
    json!({"create_request": {
        "key": base64::encode(prefix),
        "range_end": base64::encode(&prefix_end(prefix)),
        "start_revision": start_revision.to_string(),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    // Answers captured from etcd 3.4.23.
    const PUT: &str = r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"4","raft_term":"2"}}"#;
    const GRANT: &str = r#"{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"},"ID":"4111120162091493382","TTL":"3"}"#;
    const RANGE: &str = r#"{"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"},"kvs":[{"key":"YTE=","create_revision":"3","mod_revision":"3","version":"1","value":"dg==","lease":"4111120162091493391"},{"key":"YTM=","create_revision":"4","mod_revision":"4","version":"1"}],"count":"2"}"#;
    const EMPTY_RANGE: &str =
        r#"{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"}}"#;
    const ERROR: &str = r#"{"error":"illegal base64 data at input byte 3","message":"illegal base64 data at input byte 3","code":3}"#;
    const CREATED: &str = r#"{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"},"created":true}}"#;
    const PUTS: &str = r#"{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"YTE=","create_revision":"3","mod_revision":"3","version":"1","value":"dg==","lease":"4111120162091493391"}},{"kv":{"key":"YTM=","create_revision":"4","mod_revision":"4","version":"1"}}]}}"#;
    const DELETES: &str = r#"{"result":{"header":{"revision":"6"},"events":[{"type":"DELETE","kv":{"key":"YTE=","mod_revision":"6"}}]}}"#;
    const COMPACTED: &str = r#"{"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"5"}}"#;
    const STREAM_ERROR: &str = r#"{"error":{"grpc_code":14,"http_code":503,"message":"transport is closing","http_status":"Service Unavailable"}}"#;

    fn kv(key: &str, value: &str, mod_revision: i64, lease: i64) -> KeyValue {
        KeyValue { key: key.into(), value: value.into(), mod_revision, lease }
    }

    fn watch(text: &str) -> Result<WatchMessage, String> {
        watch_message(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn unary_answers_are_read() {
        assert_eq!(write_revision(PUT.as_bytes()), Ok(4));
        assert_eq!(lease(GRANT.as_bytes()), Ok(4111120162091493382));
        let range = range(RANGE.as_bytes()).unwrap();
        assert_eq!(range.revision, 5);
        assert_eq!(range.kvs, [kv("a1", "v", 3, 4111120162091493391), kv("a3", "", 4, 0)]);
        assert_eq!(super::range(EMPTY_RANGE.as_bytes()).unwrap().kvs, []);
        assert_eq!(error_message(ERROR.as_bytes()), "illegal base64 data at input byte 3");
        assert_eq!(error_message(b"<html>"), "\"<html>\"");
    }

    #[test]
    fn malformed_unary_answers_are_errors_not_panics() {
        assert!(write_revision(b"{}").unwrap_err().contains("no revision"));
        assert!(write_revision(b"not json").is_err());
        assert!(write_revision(br#"{"header":{"revision":"x"}}"#).unwrap_err().contains("not an integer"));
        assert!(lease(br#"{"header":{"revision":"2"}}"#).unwrap_err().contains("no lease ID"));
        assert!(range(br#"{"header":{"revision":"2"},"kvs":[{"value":"dg=="}]}"#)
            .unwrap_err()
            .contains("without a key"));
        assert!(range(br#"{"header":{"revision":"2"},"kvs":[{"key":"!!","mod_revision":"1"}]}"#).is_err());
        assert!(range(br#"{"header":{"revision":"2"},"kvs":[{"key":"YQ=="}]}"#)
            .unwrap_err()
            .contains("no mod_revision"));
        assert!(range(br#"{"header":{"revision":"2"},"kvs":{}}"#).is_err());
        assert!(range(br#"[]"#).is_err());
    }

    #[test]
    fn watch_messages_are_read() {
        assert_eq!(watch(CREATED), Ok(WatchMessage::Created));
        let puts = vec![
            Event { kind: EventKind::Put, kv: kv("a1", "v", 3, 4111120162091493391) },
            Event { kind: EventKind::Put, kv: kv("a3", "", 4, 0) },
        ];
        assert_eq!(watch(PUTS), Ok(WatchMessage::Events(puts)));
        let deletes = vec![Event { kind: EventKind::Delete, kv: kv("a1", "", 6, 0) }];
        assert_eq!(watch(DELETES), Ok(WatchMessage::Events(deletes)));
        assert_eq!(watch(r#"{"result":{"header":{"revision":"9"}}}"#), Ok(WatchMessage::Events(vec![])));
        let Ok(WatchMessage::Canceled(why)) = watch(COMPACTED) else { panic!("not canceled") };
        assert!(why.contains("compacted"), "{why}");
        assert_eq!(watch(STREAM_ERROR), Err("transport is closing".to_owned()));
    }

    #[test]
    fn malformed_watch_messages_are_errors_not_panics() {
        for bad in [
            r#"{"result":{"events":[{"type":"PUT"}]}}"#,
            r#"{"result":{"events":[{"type":"TOUCH","kv":{"key":"YQ==","mod_revision":"1"}}]}}"#,
            r#"{"result":{"events":[{"kv":{"key":"YQ=="}}]}}"#,
            r#"{"result":{"events":[{"kv":{"key":"YQ==","mod_revision":"1","value":"%%%="}}]}}"#,
            r#"{"result":{"events":"none"}}"#,
            r#"{"result":7}"#,
            r#"{"other":1}"#,
            r#"[]"#,
        ] {
            assert!(watch(bad).is_err(), "{bad}");
        }
        let Ok(WatchMessage::Canceled(why)) = watch(r#"{"result":{"canceled":true,"cancel_reason":"gone"}}"#)
        else {
            panic!("not canceled")
        };
        assert_eq!(why, "canceled by etcd: gone");
    }

    #[test]
    fn prefixes_end_after_their_last_key() {
        assert_eq!(prefix_end(b"/bunsan/control/"), b"/bunsan/control0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        let request = watch_request(b"/p/", 7);
        assert_eq!(request["create_request"]["range_end"], base64::encode(b"/p0"));
        assert_eq!(request["create_request"]["start_revision"], "7");
        let txn = put_all_request(&[(b"k".to_vec(), b"v".to_vec())], 42);
        assert_eq!(txn["success"][0]["request_put"]["lease"], "42");
    }
}
