//! `Upgrade` over HTTP/1.1 (WebSocket and others): the request is forwarded with its
//! `Upgrade` header, and only once the server has answered `101 Switching Protocols`
//! do both connections become one byte tunnel. Any other answer is relayed as a normal
//! response and the client connection stays HTTP.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::ResponseBody;
use crate::server::InFlight;

/// Whether `req` asks to switch protocols: HTTP/1.1, `Connection: upgrade` and an
/// `Upgrade` header. (HTTP/2 has no `Upgrade`; its extended CONNECT is not supported.)
pub fn requested<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && has_token(req.headers(), "upgrade")
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Puts the upgrade back on a request head whose hop-by-hop headers were stripped.
pub fn restore(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::UPGRADE, upgrade);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Answers the client with the server's `101` and joins the two connections once hyper
/// has handed both over. `in_flight` counts the tunnel as work on the server until it
/// closes.
pub fn tunnel(
    mut response: Response<hyper::body::Incoming>,
    client: OnUpgrade,
    in_flight: InFlight,
) -> Response<ResponseBody> {
    debug_assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let server = hyper::upgrade::on(&mut response);
    let (parts, _empty) = response.into_parts();
    tokio::spawn(async move {
        let (client, server) = match tokio::try_join!(client, server) {
            Ok(both) => both,
            Err(error) => return tracing::debug!(%error, "upgrade did not complete"),
        };
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
        }
        drop(in_flight);
    });
    let mut reply = Response::from_parts(parts, ResponseBody::empty());
    *reply.version_mut() = Version::HTTP_11;
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, pairs: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::new(());
        *req.version_mut() = version;
        for (k, v) in pairs {
            req.headers_mut().append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        req
    }

    #[test]
    fn an_upgrade_needs_http11_the_header_and_the_connection_token() {
        let ws = [("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")];
        assert!(requested(&request(Version::HTTP_11, &ws)));
        assert!(!requested(&request(Version::HTTP_10, &ws)));
        assert!(!requested(&request(Version::HTTP_2, &ws)));
        assert!(!requested(&request(Version::HTTP_11, &[("upgrade", "websocket")])));
        assert!(!requested(&request(Version::HTTP_11, &[("connection", "upgrade")])));
    }
}
