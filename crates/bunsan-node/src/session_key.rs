//! The secret that signs session identifiers: from the config, or from a key file that
//! is created with a random key on first start.
//!
//! Every node that should honour the same identifiers needs the same key: copy the file
//! (or set `[node] session_key`) across them. The file is created `0600` because anyone
//! holding the key can mint identifiers for any server.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bunsan_config::SessionKeySource;
use bunsan_core::SessionKey;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::NodeError;

/// Random bytes in a generated key (hex-encoded in the file).
const GENERATED_KEY_BYTES: usize = 32;
/// The shortest key accepted from a file, as for `session_key` in the config.
const MIN_FILE_KEY_CHARS: usize = 32;

/// Loads the key, creating the key file if it does not exist yet.
pub fn load(source: &SessionKeySource) -> Result<SessionKey, NodeError> {
    let secret = match source {
        SessionKeySource::Inline(secret) => secret.expose().to_owned(),
        SessionKeySource::File(path) => read_or_create(path)?,
    };
    SessionKey::new(secret.as_bytes()).map_err(|e| key_error(source, e.to_string()))
}

fn read_or_create(path: &Path) -> Result<String, NodeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => check_file_key(path, text.trim()),
        Err(e) if e.kind() == ErrorKind::NotFound => match create(path) {
            // Another node sharing the file may have created it a moment ago.
            Err(NodeError::SessionKey { .. }) if path.exists() => read_or_create_existing(path),
            result => result,
        },
        Err(e) => Err(file_error(path, format!("cannot read it: {e}"))),
    }
}

fn read_or_create_existing(path: &Path) -> Result<String, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, format!("cannot read it: {e}")))?;
    check_file_key(path, text.trim())
}

fn check_file_key(path: &Path, key: &str) -> Result<String, NodeError> {
    if key.chars().count() < MIN_FILE_KEY_CHARS {
        return Err(file_error(path, format!("the key must be at least {MIN_FILE_KEY_CHARS} characters")));
    }
    Ok(key.to_owned())
}

/// Writes a fresh random key (hex) to a new file readable only by its owner.
fn create(path: &Path) -> Result<String, NodeError> {
    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| file_error(path, "no randomness available".into()))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_error(path, format!("cannot create it: {e} (set [node] session_key_file)")))?;
    writeln!(file, "{key}").map_err(|e| file_error(path, format!("cannot write it: {e}")))?;
    tracing::info!(path = %path.display(), "created a new session key; copy it to every node that shares sessions");
    Ok(key)
}

fn file_error(path: &Path, reason: String) -> NodeError {
    NodeError::SessionKey { source_name: path.display().to_string(), reason }
}

fn key_error(source: &SessionKeySource, reason: String) -> NodeError {
    let source_name = match source {
        SessionKeySource::Inline(_) => "[node] session_key".to_owned(),
        SessionKeySource::File(path) => path.display().to_string(),
    };
    NodeError::SessionKey { source_name, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_a_private_key_file_once_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.key");
        let first = read_or_create(&path).unwrap();
        assert_eq!(first.len(), 2 * GENERATED_KEY_BYTES);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_or_create(&path).unwrap(), first);
    }

    #[test]
    fn short_or_unwritable_keys_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, "tooshort\n").unwrap();
        let error = read_or_create(&short).unwrap_err().to_string();
        assert!(error.contains("short.key") && error.contains("at least 32"), "{error}");
        let error = read_or_create(Path::new("/nonexistent-dir/session.key")).unwrap_err().to_string();
        assert!(error.contains("cannot create it"), "{error}");
    }
}
