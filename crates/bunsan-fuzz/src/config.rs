//! `config`: [`bunsan_config::parse`] on any text. It returns a config or errors, and every
//! error points at a line and column that exist in the text (operators jump to them).

use std::path::Path;

use bunsan_config::ConfigError;

/// Parses `data` (when it is UTF-8, as the config loader requires) as a config file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Err(errors) = bunsan_config::parse(text, Path::new("fuzz.toml")) else { return };
    assert!(!errors.errors.is_empty(), "a refused config must say why");
    for error in &errors.errors {
        check_position(text, error);
        // The decoder's own marker for "gave up without a reason": a bug by definition.
        assert!(!error.to_string().contains("this is a bug in bunsan"), "{error}");
    }
    // The message `bunsan check` prints must render too.
    let _ = errors.to_string();
}

/// `line` and `column` are 1-based; the column may sit one past the line's last
/// character (an error at the end of a line or of the file).
fn check_position(text: &str, error: &ConfigError) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(error.line >= 1 && error.line <= lines.len(), "line out of range: {error:?}");
    let width = lines[error.line - 1].chars().count();
    assert!(error.column >= 1 && error.column <= width + 1, "column out of range: {error:?}");
}
