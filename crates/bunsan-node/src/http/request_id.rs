//! `X-Request-Id`: a client's id is passed on when it is well-formed, otherwise the node
//! generates one; either way the server, the client's response and the access log carry
//! the same id, so one request can be followed across every hop.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The header's name.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id passed on as it is; a longer one is replaced.
const MAX_LEN: usize = 128;

/// Makes sure `headers` carry exactly one well-formed id, and returns it. Several ids, an
/// empty one, an overlong one, or one with characters outside a safe set (which could
/// forge log lines or smuggle quotes) are replaced by a fresh id.
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    let passed = match (values.next(), values.next()) {
        (Some(only), None) if well_formed(only.as_bytes()) => Some(only.clone()),
        _ => None,
    };
    let id = passed.unwrap_or_else(generate);
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

fn well_formed(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=~@".contains(b))
}

/// 128 random bits as 32 lowercase hex digits.
fn generate() -> HeaderValue {
    let (high, low) = (fastrand::u64(..), fastrand::u64(..));
    let text = format!("{high:016x}{low:016x}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_a_well_formed_id_on() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("trace-42.a:b"));
        assert_eq!(ensure(&mut headers), "trace-42.a:b");
        assert_eq!(headers.get_all(&X_REQUEST_ID).iter().count(), 1);
    }

    #[test]
    fn replaces_missing_duplicate_or_unsafe_ids() {
        let fresh = |headers: &mut HeaderMap| {
            let id = ensure(headers);
            assert_eq!(id.len(), 32, "{id:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
            assert_eq!(headers[&X_REQUEST_ID], id);
            id
        };
        let a = fresh(&mut HeaderMap::new());
        let b = fresh(&mut HeaderMap::new());
        assert_ne!(a, b);
        for bad in ["", "has space", "quote\"", &"x".repeat(MAX_LEN + 1)] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            assert_ne!(fresh(&mut headers), bad);
        }
        let mut two = HeaderMap::new();
        two.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        two.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        fresh(&mut two);
    }
}
