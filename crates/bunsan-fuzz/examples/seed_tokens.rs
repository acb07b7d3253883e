//! Writes genuine session tokens, signed with the `session_token` target's fixed key, to
//! `fuzz/seeds/session_token/` (`cargo run -p bunsan-fuzz --example seed_tokens`): a
//! fuzzer cannot forge a MAC, so valid tokens have to be given to it.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/session_token");
    std::fs::create_dir_all(&dir)?;
    for (i, text) in bunsan_fuzz::seed_tokens().iter().enumerate() {
        std::fs::write(dir.join(format!("token{i}")), text)?;
    }
    Ok(())
}
