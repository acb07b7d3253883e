//! `bunsan ctl control …`: the state manager's table, registry and pins (seed 001).

use anyhow::Context;
use http::Method;

use bunsan_proto::control::{Pin, Registry, Table, TableServer};

use super::client::ApiClient;
use super::{render, split_target, table};

/// Arguments of `bunsan ctl control`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The state manager.
    #[arg(long, env = "BUNSAN_CONTROL", default_value = "http://127.0.0.1:9800")]
    control: String,
    /// Its operator token, if it has one.
    #[arg(long, env = "BUNSAN_CONTROL_TOKEN", hide_env_values = true)]
    control_token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The load table every subscriber receives.
    State,
    /// Registered agents and subscribers.
    Registry,
    /// Fix a server's state (and optionally load and capacity) until released:
    /// `bunsan ctl control pin app/host2 maint`.
    Pin {
        /// `POOL/SERVER`.
        target: String,
        /// `ready`, `drain`, `maint` or `down`.
        state: String,
        /// The load to show instead of the reported one.
        #[arg(long)]
        load: Option<f64>,
        /// The capacity to use instead of the configured one.
        #[arg(long)]
        capacity: Option<u32>,
    },
    /// Release a pin.
    Unpin {
        /// `POOL/SERVER`.
        target: String,
    },
}

/// Runs one `ctl control` command and returns what to print.
pub async fn execute(args: &Args, json: bool) -> anyhow::Result<String> {
    let client = ApiClient::new(&args.control, args.control_token.clone())?;
    match &args.command {
        Command::State => {
            let body = client.call(Method::GET, "/v1/state", None).await?;
            render(json, &body, |t: Table| state_table(&t))
        }
        Command::Registry => {
            let body = client.call(Method::GET, "/v1/registry", None).await?;
            render(json, &body, |r: Registry| registry_tables(&r))
        }
        Command::Pin { target, state, load, capacity } => {
            let (pool, server) = split_target(target)?;
            let pin = Pin { state: state.clone(), load: *load, capacity: *capacity };
            let body = serde_json::to_string(&pin).context("encoding the pin")?;
            let answer = client.call(Method::PUT, &format!("/v1/pins/{pool}/{server}"), Some(body)).await?;
            render(json, &answer, |row: TableServer| describe(&row))
        }
        Command::Unpin { target } => {
            let (pool, server) = split_target(target)?;
            let answer = client.call(Method::DELETE, &format!("/v1/pins/{pool}/{server}"), None).await?;
            render(json, &answer, |row: TableServer| describe(&row))
        }
    }
}

fn describe(row: &TableServer) -> String {
    let state = row.state.as_deref().unwrap_or("unknown");
    let pin = if row.pinned { " (pinned at the control plane)" } else { "" };
    format!("{}/{}: {state}{pin}\n", row.pool, row.server)
}

fn state_table(table: &Table) -> String {
    let rows: Vec<Vec<String>> = table
        .servers
        .iter()
        .map(|r| {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            vec![
                r.pool.clone(),
                r.server.clone(),
                opt(r.state.clone()),
                opt(r.load.map(|l| format!("{l}"))),
                opt(r.capacity.map(|c| c.to_string())),
                if r.pinned { "yes" } else { "-" }.to_owned(),
                format!("{:?}", r.source).to_lowercase(),
                opt(r.age_ms.map(|a| format!("{:.1}s", a as f64 / 1000.0))),
            ]
        })
        .collect();
    let header = ["POOL", "SERVER", "STATE", "LOAD", "CAPACITY", "PINNED", "SOURCE", "AGE"];
    format!("table version {}\n{}", table.version, table::render(&header, &rows))
}

fn registry_tables(registry: &Registry) -> String {
    let agents: Vec<Vec<String>> = registry
        .agents
        .iter()
        .map(|a| {
            let watched: Vec<String> = a.servers.iter().map(|w| format!("{}/{}", w.pool, w.server)).collect();
            let last =
                a.last_report_ms.map_or("-".to_owned(), |ms| format!("{:.1}s ago", ms as f64 / 1000.0));
            vec![a.agent.clone(), a.method.clone(), watched.join(","), last]
        })
        .collect();
    let subscribers: Vec<Vec<String>> = registry
        .subscribers
        .iter()
        .map(|s| {
            let delivery = format!("{:?}", s.delivery).to_lowercase();
            vec![
                s.id.clone(),
                s.name.clone(),
                s.kind.clone(),
                delivery,
                if s.connected { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    let mut out = table::render(&["AGENT", "METHOD", "WATCHES", "LAST REPORT"], &agents);
    out.push('\n');
    out.push_str(&table::render(&["SUBSCRIBER", "NAME", "KIND", "DELIVERY", "CONNECTED"], &subscribers));
    out
}
