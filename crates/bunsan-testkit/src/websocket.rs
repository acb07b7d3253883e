//! WebSocket on both ends of a test: the backend side accepts an upgrade and echoes
//! every message; the client side connects through a node and talks.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::backend::Body;

/// Whether `req` asks for a WebSocket.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Answers `101` with the handshake's accept key and echoes messages once hyper hands
/// the connection over.
pub(crate) fn accept_echo(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes())) else {
        let mut bad = Response::new(Empty::new().map_err(|never| match never {}).boxed());
        *bad.status_mut() = StatusCode::BAD_REQUEST;
        return bad;
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            let reply = match message {
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert("sec-websocket-accept", HeaderValue::from_str(&key).expect("base64 is header-safe"));
    response
}

/// A WebSocket client connected to `ws://ADDR/PATH`.
pub type Socket = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects a WebSocket client to `addr` (through a node, typically).
pub async fn connect(addr: std::net::SocketAddr, path: &str) -> Result<Socket, String> {
    let url = format!("ws://{addr}{path}");
    tokio_tungstenite::connect_async(url).await.map(|(socket, _response)| socket).map_err(|e| e.to_string())
}
