//! `bunsan check`: validate a config file the way `serve` would, without binding.

use std::path::Path;
use std::process::ExitCode;

/// Prints every problem (one per line, `FILE:LINE:COL: KEY: MESSAGE`) or a summary.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match bunsan_config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(error) = bunsan_node::preflight(&config) {
        eprintln!("{}: {error}", path.display());
        return Ok(ExitCode::FAILURE);
    }
    let servers: usize = config.pools.iter().map(|p| p.servers.len()).sum();
    println!(
        "{}: OK ({} listener(s), {} pool(s), {} server(s))",
        path.display(),
        config.listeners.len(),
        config.pools.len(),
        servers
    );
    Ok(ExitCode::SUCCESS)
}
