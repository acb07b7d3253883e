//! bunsan's rule for pool, server and agent names, shared with the config crate.

/// The longest name.
const MAX_NAME_LEN: usize = 64;

/// Checks a pool, server, agent or subscriber name. Names appear in URL paths
/// (`/v1/pins/app/host1`), so they are kept to characters that need no escaping.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(format!(
            "invalid {what} name {name:?}: names are 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        ));
    }
    // "." and ".." are URL dot-segments: clients would rewrite `/pins/..` before sending.
    if name == "." || name == ".." {
        return Err(format!("invalid {what} name {name:?}: \".\" and \"..\" cannot appear in URLs"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn accepts_the_rule_and_rejects_the_rest() {
        for good in ["app", "host-1.a_b", &"x".repeat(64)] {
            assert_eq!(check_name("pool", good), Ok(()));
        }
        for bad in ["", "a b", "a/b", "é", "..", ".", &"x".repeat(65)] {
            let error = check_name("pool", bad).unwrap_err();
            assert!(error.starts_with("invalid pool name"), "{error}");
        }
    }
}
