//! Routing: which endpoint a request is for, which role it needs, and the handlers.

use bunsan_proto::control::{AgentRegistration, Pin, Subscribed, Subscription};
use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;

use super::reply::{error, json, query, read_body, read_json, refused, Reply};
use super::Context;
use crate::error::RequestError;
use crate::reports::{self, MAX_REPORT_BODY};
use crate::settings::Role;

/// The largest body of anything but reports and agent registrations.
const MAX_BODY: usize = 64 * 1024;

/// The control API's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint<'a> {
    Agents,
    Reports,
    Subscribers,
    State,
    Watch,
    Assign(&'a str),
    Pin(&'a str, &'a str),
    Unpin(&'a str, &'a str),
    Registry,
}

impl Endpoint<'_> {
    fn role(self) -> Role {
        match self {
            Self::Agents | Self::Reports => Role::Agent,
            Self::Subscribers | Self::State | Self::Watch | Self::Assign(_) => Role::Subscriber,
            Self::Pin(..) | Self::Unpin(..) | Self::Registry => Role::Operator,
        }
    }
}

/// Why a request matches no endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misroute {
    /// 405: the path exists with these methods.
    NotAllowed(&'static str),
    /// 404.
    NotFound,
}

/// Which endpoint `method path` is.
fn route<'a>(method: &Method, segments: &[&'a str]) -> Result<Endpoint<'a>, Misroute> {
    let endpoint = match (method, segments) {
        (&Method::POST, ["v1", "agents"]) => Endpoint::Agents,
        (&Method::POST, ["v1", "reports"]) => Endpoint::Reports,
        (&Method::POST, ["v1", "subscribers"]) => Endpoint::Subscribers,
        (&Method::GET, ["v1", "state"]) => Endpoint::State,
        (&Method::GET, ["v1", "watch"]) => Endpoint::Watch,
        (&Method::GET, ["v1", "assign", pool]) => Endpoint::Assign(pool),
        (&Method::PUT, ["v1", "pins", pool, server]) => Endpoint::Pin(pool, server),
        (&Method::DELETE, ["v1", "pins", pool, server]) => Endpoint::Unpin(pool, server),
        (&Method::GET, ["v1", "registry"]) => Endpoint::Registry,
        (_, ["v1", "agents" | "reports" | "subscribers"]) => return Err(Misroute::NotAllowed("POST")),
        (_, ["v1", "state" | "watch" | "registry"] | ["v1", "assign", _]) => {
            return Err(Misroute::NotAllowed("GET"))
        }
        (_, ["v1", "pins", _, _]) => return Err(Misroute::NotAllowed("PUT, DELETE")),
        _ => return Err(Misroute::NotFound),
    };
    Ok(endpoint)
}

fn misrouted(why: Misroute, path: &str) -> Reply {
    match why {
        Misroute::NotAllowed(allow) => {
            let message = format!("method not allowed here (allowed: {allow})");
            let mut reply = error(StatusCode::METHOD_NOT_ALLOWED, message);
            reply.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            reply
        }
        Misroute::NotFound => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

/// Routes, authorizes and answers one request.
pub async fn handle(ctx: &Context, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let endpoint = match route(req.method(), &segments) {
        Ok(endpoint) => endpoint,
        Err(why) => return misrouted(why, &path),
    };
    let role = endpoint.role();
    if !ctx.tokens.allows(role, bearer(&req)) {
        let message =
            format!("missing or wrong bearer token: this endpoint needs the {} token", role.as_str());
        return error(StatusCode::UNAUTHORIZED, message);
    }
    dispatch(ctx, endpoint, req).await.unwrap_or_else(refused)
}

/// The token after `Authorization: Bearer`, if any.
fn bearer(req: &Request<Incoming>) -> Option<&[u8]> {
    req.headers().get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
}

async fn dispatch(
    ctx: &Context,
    endpoint: Endpoint<'_>,
    req: Request<Incoming>,
) -> Result<Reply, RequestError> {
    let manager = &ctx.manager;
    let ok = StatusCode::OK;
    match endpoint {
        Endpoint::Agents => {
            let registration: AgentRegistration = read_json(req, MAX_REPORT_BODY).await?;
            manager.register_agent(registration).await?;
            Ok(json(ok, &serde_json::json!({})))
        }
        Endpoint::Reports => {
            let body = read_body(req, MAX_REPORT_BODY).await?;
            let batch = reports::parse(&body).map_err(RequestError::Invalid)?;
            let accepted = manager.report(batch).await?;
            Ok(json(ok, &serde_json::json!({ "accepted": accepted })))
        }
        Endpoint::Subscribers => {
            let subscription: Subscription = read_json(req, MAX_BODY).await?;
            Ok(json(ok, &Subscribed { id: manager.subscribe(subscription).await? }))
        }
        Endpoint::State => Ok(json(ok, &manager.table())),
        Endpoint::Watch => super::watch::start(ctx, &req),
        Endpoint::Assign(pool) => {
            let subscriber = query(&req, "subscriber").ok_or_else(|| {
                RequestError::invalid("assign needs ?subscriber=ID (from POST /v1/subscribers)")
            })?;
            Ok(json(ok, &manager.assign(pool, subscriber)?))
        }
        Endpoint::Pin(pool, server) => {
            let pin: Pin = read_json(req, MAX_BODY).await?;
            Ok(json(ok, &manager.pin(pool, server, pin).await?))
        }
        Endpoint::Unpin(pool, server) => Ok(json(ok, &manager.unpin(pool, server).await?)),
        Endpoint::Registry => Ok(json(ok, &manager.registry())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_roles() {
        fn ok<'a>(m: Method, s: &[&'a str]) -> Option<(Endpoint<'a>, Role)> {
            route(&m, s).map(|e| (e, e.role())).ok()
        }
        assert_eq!(ok(Method::POST, &["v1", "reports"]), Some((Endpoint::Reports, Role::Agent)));
        assert_eq!(
            ok(Method::GET, &["v1", "assign", "app"]),
            Some((Endpoint::Assign("app"), Role::Subscriber))
        );
        assert_eq!(
            ok(Method::DELETE, &["v1", "pins", "a", "b"]),
            Some((Endpoint::Unpin("a", "b"), Role::Operator))
        );
        let status = |m: Method, s: &[&str]| route(&m, s).err().map(|r| misrouted(r, "/").status());
        assert_eq!(status(Method::GET, &["v1", "reports"]), Some(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(status(Method::POST, &["v1", "pins", "a", "b"]), Some(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(status(Method::GET, &["v1", "nothing"]), Some(StatusCode::NOT_FOUND));
        assert_eq!(status(Method::GET, &["v1", "pins", "a"]), Some(StatusCode::NOT_FOUND));
    }
}
