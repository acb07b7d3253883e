//! Admin API routing and handlers.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use bunsan_core::{ServerState, SessionId};
use bunsan_proto::admin::{ErrorBody, StateChange};

use super::view::{connections, pool_detail, pool_summary, server_status, sessions};
use super::AdminContext;
use crate::state::{Command, StateError};

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

type Reply = Response<Full<Bytes>>;

/// Routes one admin request.
pub async fn handle(ctx: &AdminContext, req: Request<Incoming>) -> Reply {
    if !authorized(ctx, &req) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into());
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["metrics"]) => metrics(ctx),
        (Method::GET, ["v1", "pools"]) => list_pools(ctx),
        (Method::GET, ["v1", "pools", pool]) => show_pool(ctx, pool),
        (Method::PUT, ["v1", "pools", pool, "servers", server]) => change_state(ctx, pool, server, req).await,
        (Method::DELETE, ["v1", "pools", pool, "servers", server, "pin"]) => {
            apply(ctx, pool, server, Command::Release)
        }
        (Method::GET, ["v1", "connections"]) => {
            json(StatusCode::OK, &connections(&ctx.connections, &ctx.board.topology()))
        }
        (Method::POST, ["v1", "reload"]) => reload(ctx).await,
        (Method::GET, ["v1", "sessions"]) => json(StatusCode::OK, &sessions(&ctx.board.topology().pools)),
        (Method::DELETE, ["v1", "sessions", id]) => end_session(ctx, id),
        (_, ["metrics"] | ["v1", "pools" | "sessions" | "connections" | "reload", ..]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here".into())
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

/// Checks `Authorization: Bearer …` in constant time when a token is configured.
fn authorized(ctx: &AdminContext, req: &Request<Incoming>) -> bool {
    let Some(token) = &ctx.token else { return true };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    bunsan_core::secret::constant_time_eq(presented, token.expose().as_bytes())
}

fn metrics(ctx: &AdminContext) -> Reply {
    match crate::metrics::render(&ctx.registry) {
        Ok(text) => {
            let mut reply = Response::new(Full::new(Bytes::from(text)));
            let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            reply
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded".into()),
    }
}

fn list_pools(ctx: &AdminContext) -> Reply {
    let topology = ctx.board.topology();
    json(StatusCode::OK, &topology.pools.iter().map(|p| pool_summary(p)).collect::<Vec<_>>())
}

fn show_pool(ctx: &AdminContext, name: &str) -> Reply {
    match ctx.board.topology().pool(name) {
        Some((_, pool)) => json(StatusCode::OK, &pool_detail(pool)),
        None => error(StatusCode::NOT_FOUND, StateError::UnknownPool(name.to_owned()).to_string()),
    }
}

async fn change_state(ctx: &AdminContext, pool: &str, server: &str, req: Request<Incoming>) -> Reply {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read request body: {e}")),
    };
    let change: StateChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let state = match change.state.parse::<ServerState>() {
        Ok(state) => state,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let command = if change.pin { Command::Pin(state) } else { Command::Set(state) };
    apply(ctx, pool, server, command)
}

fn apply(ctx: &AdminContext, pool: &str, server: &str, command: Command) -> Reply {
    if let Err(e) = ctx.board.apply(pool, server, command) {
        let status = match e {
            StateError::UnknownPool(_) | StateError::UnknownServer { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        return error(status, e.to_string());
    }
    tracing::info!(pool, server, ?command, "operator changed server state");
    let topology = ctx.board.topology();
    match topology.pool(pool).and_then(|(_, p)| p.server(server)) {
        Some(found) => json(StatusCode::OK, &server_status(found)),
        None => error(StatusCode::NOT_FOUND, format!("server {pool}/{server} is gone")),
    }
}

/// Re-reads the config file and applies it: 200 with what changed, or 422 with the reason
/// the new config was refused (the running one stays).
async fn reload(ctx: &AdminContext) -> Reply {
    let Some(node) = &ctx.node else {
        return error(StatusCode::NOT_FOUND, "this node does not offer reloading".into());
    };
    match node.reload().await {
        Ok(summary) => json(StatusCode::OK, &summary),
        Err(e) => {
            tracing::warn!(error = %e, "reload refused; the running config stays");
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
    }
}

/// Ends a session at once: its identifier is refused from now on, its connection closed.
fn end_session(ctx: &AdminContext, id: &str) -> Reply {
    let Ok(SessionId(key)) = id.parse::<SessionId>() else {
        return error(StatusCode::BAD_REQUEST, format!("session ids are 32 hex characters, not {id:?}"));
    };
    let topology = ctx.board.topology();
    let ended = topology.pools.iter().filter_map(|p| p.affinity.as_ref()).any(|a| a.table.invalidate(&key));
    if !ended {
        return error(StatusCode::NOT_FOUND, format!("no live session {id}"));
    }
    tracing::info!(session = id, "operator ended a session");
    json(StatusCode::OK, &serde_json::json!({ "ended": id }))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut reply = Response::new(Full::new(Bytes::from(bytes)));
            *reply.status_mut() = status;
            reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            reply
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "response could not be encoded".into()),
    }
}

fn error(status: StatusCode, message: String) -> Reply {
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}
