//! Reading a `POST /v1/reports` body: a JSON array of reports, each entry checked on its
//! own so that an error can name the entry.

use bunsan_proto::control::Report;
use serde_json::Value;

use crate::table::ReportError;

/// The most reports one request may carry.
pub const MAX_REPORTS: usize = 10_000;
/// The largest report body (10,000 entries fit comfortably).
pub const MAX_REPORT_BODY: usize = 1024 * 1024;

/// Parses a report batch; every entry must be a well-formed [`Report`].
pub fn parse(body: &[u8]) -> Result<Vec<Report>, String> {
    let entries: Vec<Value> = serde_json::from_slice(body).map_err(|e| {
        format!(
            "invalid JSON ({e}): reports are a JSON array of {{\"pool\", \"server\", \"load\", \"state\"}}"
        )
    })?;
    if entries.len() > MAX_REPORTS {
        return Err(format!("too many reports: {} (at most {MAX_REPORTS} per request)", entries.len()));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let key = key_of(&value);
            serde_json::from_value::<Report>(value)
                .map_err(|e| ReportError { index, key, why: e.to_string() }.to_string())
        })
        .collect()
}

/// `pool/server` of an entry that may be malformed, when both are strings.
fn key_of(value: &Value) -> Option<String> {
    let pool = value.get("pool")?.as_str()?;
    let server = value.get("server")?.as_str()?;
    Some(format!("{pool}/{server}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_batch_parses() {
        let reports = parse(br#"[{"pool":"app","server":"h1","load":2.5,"state":"up"}]"#).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(parse(b"[]").unwrap(), []);
    }

    #[test]
    fn errors_name_the_entry() {
        let error = parse(br#"[{"pool":"app","server":"h1","load":1,"state":"up"},{"pool":"app","server":"h2","load":"x","state":"up"}]"#)
            .unwrap_err();
        assert!(error.starts_with("report 1 (app/h2): invalid type: string"), "{error}");
        let error = parse(br#"[{"pool":"app","load":1,"state":"up"}]"#).unwrap_err();
        assert!(error.starts_with("report 0: missing field `server`"), "{error}");
    }

    #[test]
    fn malformed_and_oversized_batches_are_refused() {
        assert!(parse(b"{").unwrap_err().starts_with("invalid JSON"));
        assert!(parse(br#"{"pool":"app"}"#).unwrap_err().contains("JSON array"));
        let many = format!("[{}]", vec!["{}"; MAX_REPORTS + 1].join(","));
        assert_eq!(
            parse(many.as_bytes()).unwrap_err(),
            "too many reports: 10001 (at most 10000 per request)"
        );
    }
}
