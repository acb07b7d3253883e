//! `bunsan ctl`: the command-line client of a node's admin API.

mod client;
mod control;
mod table;

use std::process::ExitCode;

use anyhow::{bail, Context};
use http::Method;

use bunsan_proto::admin::{
    ConnectionInfo, ConnectionsReport, PoolDetail, PoolSummary, ReloadSummary, ServerStatus, SessionsReport,
    StateChange,
};
use client::ApiClient;

/// Arguments of `bunsan ctl`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node's admin API.
    #[arg(long, env = "BUNSAN_ADMIN", default_value = "http://127.0.0.1:9900")]
    admin: String,
    /// The admin API's bearer token, if it has one.
    #[arg(long, env = "BUNSAN_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// List pools.
    Pools,
    /// Show one pool's servers with their live load.
    Pool {
        /// The pool's name.
        name: String,
    },
    /// Set a server's state: `bunsan ctl server app/host1 maint --pin`.
    Server {
        /// `POOL/SERVER`.
        target: String,
        /// `ready`, `drain` or `maint`.
        state: String,
        /// Hold the state until `bunsan ctl unpin` (health checks cannot change it).
        #[arg(long)]
        pin: bool,
    },
    /// Release a server's pin.
    Unpin {
        /// `POOL/SERVER`.
        target: String,
    },
    /// Talk to the state manager (`bunsan control`): its table, registry and pins.
    Control(control::Args),
    /// Show the connection table: which server each client connection is associated with.
    Connections,
    /// Make the node re-read its config file; prints what changed, or why the new config
    /// was refused (exit status 1; the running config stays).
    Reload,
    /// Show sessions per pool and server, with a sample; or end one.
    Sessions {
        /// End this session now (its identifier is refused from then on).
        #[arg(long, value_name = "ID")]
        end: Option<String>,
    },
}

/// Runs one ctl command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.admin, args.token.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let output = runtime.block_on(execute(&client, &args))?;
    print!("{output}");
    Ok(ExitCode::SUCCESS)
}

async fn execute(client: &ApiClient, args: &Args) -> anyhow::Result<String> {
    match &args.command {
        CtlCommand::Pools => {
            let body = client.call(Method::GET, "/v1/pools", None).await?;
            render(args.json, &body, |pools: Vec<PoolSummary>| pools_table(&pools))
        }
        CtlCommand::Pool { name } => {
            let body = client.call(Method::GET, &format!("/v1/pools/{name}"), None).await?;
            render(args.json, &body, |pool: PoolDetail| servers_table(&pool.servers))
        }
        CtlCommand::Server { target, state, pin } => {
            let (pool, server) = split_target(target)?;
            let change = serde_json::to_string(&StateChange { state: state.clone(), pin: *pin })?;
            let path = format!("/v1/pools/{pool}/servers/{server}");
            let body = client.call(Method::PUT, &path, Some(change)).await?;
            render(args.json, &body, |s: ServerStatus| describe(pool, &s))
        }
        CtlCommand::Control(control) => control::execute(control, args.json).await,
        CtlCommand::Reload => {
            let body = client.call(Method::POST, "/v1/reload", None).await.context("reload refused")?;
            render(args.json, &body, |summary: ReloadSummary| describe_reload(&summary))
        }
        CtlCommand::Connections => {
            let body = client.call(Method::GET, "/v1/connections", None).await?;
            render(args.json, &body, |report: ConnectionsReport| connections_tables(&report))
        }
        CtlCommand::Sessions { end: Some(id) } => {
            client.call(Method::DELETE, &format!("/v1/sessions/{id}"), None).await?;
            Ok(if args.json { format!("{{\"ended\":\"{id}\"}}\n") } else { format!("session {id} ended\n") })
        }
        CtlCommand::Sessions { end: None } => {
            let body = client.call(Method::GET, "/v1/sessions", None).await?;
            render(args.json, &body, |report: SessionsReport| sessions_tables(&report))
        }
        CtlCommand::Unpin { target } => {
            let (pool, server) = split_target(target)?;
            let path = format!("/v1/pools/{pool}/servers/{server}/pin");
            let body = client.call(Method::DELETE, &path, None).await?;
            render(args.json, &body, |s: ServerStatus| describe(pool, &s))
        }
    }
}

/// Either the raw JSON, or the parsed value rendered for people.
pub(crate) fn render<T: serde::de::DeserializeOwned>(
    json: bool,
    body: &[u8],
    human: impl FnOnce(T) -> String,
) -> anyhow::Result<String> {
    if json {
        return Ok(String::from_utf8_lossy(body).into_owned());
    }
    let value = serde_json::from_slice(body).context("the admin API answered something unexpected")?;
    Ok(human(value))
}

pub(crate) fn split_target(target: &str) -> anyhow::Result<(&str, &str)> {
    match target.split_once('/') {
        Some((pool, server)) if !pool.is_empty() && !server.is_empty() => Ok((pool, server)),
        _ => bail!("expected POOL/SERVER, like app/host1, got {target:?}"),
    }
}

fn describe(pool: &str, s: &ServerStatus) -> String {
    let pin = if s.pinned { " (pinned)" } else { "" };
    format!("{pool}/{}: {}{pin}\n", s.name, s.state)
}

fn describe_reload(summary: &ReloadSummary) -> String {
    if summary.is_empty() {
        return "reloaded: nothing changed\n".to_owned();
    }
    let parts = [
        ("pools added", &summary.pools_added),
        ("pools removed", &summary.pools_removed),
        ("pools changed", &summary.pools_changed),
        ("servers added", &summary.servers_added),
        ("servers removed", &summary.servers_removed),
        ("servers changed", &summary.servers_changed),
        ("listeners added", &summary.listeners_added),
        ("listeners removed", &summary.listeners_removed),
        ("listeners changed", &summary.listeners_changed),
        ("needs a restart (not applied)", &summary.needs_restart),
    ];
    let mut out = "reloaded\n".to_owned();
    for (what, names) in parts.iter().filter(|(_, names)| !names.is_empty()) {
        out.push_str(&format!("  {what}: {}\n", names.join(", ")));
    }
    out
}

fn pools_table(pools: &[PoolSummary]) -> String {
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            let (servers, ready) = (p.servers.to_string(), p.ready.to_string());
            vec![
                p.name.clone(),
                p.algorithm.clone(),
                servers,
                ready,
                p.in_flight.to_string(),
                p.requests_total.to_string(),
            ]
        })
        .collect();
    table::render(&["POOL", "ALGORITHM", "SERVERS", "READY", "IN-FLIGHT", "REQUESTS"], &rows)
}

fn servers_table(servers: &[ServerStatus]) -> String {
    let rows: Vec<Vec<String>> = servers.iter().map(server_row).collect();
    let header = [
        "SERVER",
        "ADDR",
        "STATE",
        "PINNED",
        "CAPACITY",
        "LOAD",
        "SOURCE",
        "RELATIVE",
        "IN-FLIGHT",
        "REQUESTS",
    ];
    table::render(&header, &rows)
}

fn server_row(s: &ServerStatus) -> Vec<String> {
    vec![
        s.name.clone(),
        s.addr.clone(),
        s.state.clone(),
        if s.pinned { "yes" } else { "-" }.to_owned(),
        s.capacity.to_string(),
        format!("{}", s.load),
        s.load_source.clone(),
        format!("{:.2}", s.relative_load),
        s.in_flight.to_string(),
        s.requests_total.to_string(),
    ]
}

fn sessions_tables(report: &SessionsReport) -> String {
    if report.pools.is_empty() {
        return "no pool has session affinity\n".to_owned();
    }
    let counts: Vec<Vec<String>> = report
        .pools
        .iter()
        .flat_map(|p| {
            let total = vec![p.pool.clone(), p.mode.clone(), "(all)".to_owned(), p.active.to_string()];
            let each = p
                .servers
                .iter()
                .map(|s| vec![String::new(), String::new(), s.server.clone(), s.sessions.to_string()]);
            std::iter::once(total).chain(each)
        })
        .collect();
    let mut out = table::render(&["POOL", "MODE", "SERVER", "SESSIONS"], &counts);
    if !report.sample.is_empty() {
        let rows: Vec<Vec<String>> = report.sample.iter().map(session_row).collect();
        out.push('\n');
        out.push_str(&table::render(&["SESSION", "POOL", "SERVER", "AGE", "CLIENTS", "IDLE"], &rows));
    }
    out
}

fn session_row(s: &bunsan_proto::admin::SessionInfo) -> Vec<String> {
    let idle = s.idle_seconds.map_or("-".to_owned(), |i| format!("{i:.0}s"));
    let age = format!("{:.0}s", s.age_seconds);
    vec![s.id.clone(), s.pool.clone(), s.server.clone(), age, s.client_connections.to_string(), idle]
}

fn connections_tables(report: &ConnectionsReport) -> String {
    let mut rows: Vec<Vec<String>> = report
        .servers
        .iter()
        .map(|s| vec![s.pool.clone(), s.server.clone(), s.connections.to_string()])
        .collect();
    if report.unassociated > 0 {
        rows.push(vec!["-".into(), "(none yet)".into(), report.unassociated.to_string()]);
    }
    let mut out = format!("{} client connection(s)\n", report.total);
    out.push_str(&table::render(&["POOL", "SERVER", "CONNECTIONS"], &rows));
    if !report.sample.is_empty() {
        let sample: Vec<Vec<String>> = report.sample.iter().map(connection_row).collect();
        out.push('\n');
        let header = ["ID", "CLIENT", "LISTENER", "SERVER", "AGE", "REQUESTS", "FAILOVERS"];
        out.push_str(&table::render(&header, &sample));
    }
    out
}

fn connection_row(c: &ConnectionInfo) -> Vec<String> {
    let server = match (&c.pool, &c.server) {
        (Some(pool), Some(server)) => format!("{pool}/{server}"),
        _ => "-".to_owned(),
    };
    let age = format!("{:.0}s", c.age_seconds);
    vec![
        c.id.to_string(),
        c.client.clone(),
        c.listener.clone(),
        server,
        age,
        c.requests.to_string(),
        c.failovers.to_string(),
    ]
}
