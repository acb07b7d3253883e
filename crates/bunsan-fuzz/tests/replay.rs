//! Replays every committed fuzz input — `fuzz/seeds/<target>/` (hand-written valid
//! inputs), `fuzz/corpus/<target>/` (what the fuzzers found interesting) and `fuzz/regressions/<target>/` (inputs that once broke a property) —
//! through the targets on stable Rust, so `cargo test` catches a regression without
//! libFuzzer.

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file of `dir` (none if it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("readable directory entry").path()).collect();
    files.retain(|path| path.is_file());
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut total = 0;
    for (name, target) in bunsan_fuzz::TARGETS {
        for path in inputs(&fuzz_dir().join(kind).join(name)) {
            let data = fs::read(&path).expect("readable corpus file");
            // The path in the panic message is the file to look at.
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} broke a property on {}", path.display());
            total += 1;
        }
    }
    total
}

#[test]
fn corpora_replay_cleanly() {
    let replayed = replay("corpus");
    assert!(replayed > 0, "no corpus found under {}", fuzz_dir().display());
}

#[test]
fn seeds_replay_cleanly() {
    assert!(replay("seeds") > 0);
}

#[test]
fn regressions_stay_fixed() {
    replay("regressions");
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in bunsan_fuzz::TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        assert!(!inputs(&dir).is_empty(), "{} is empty", dir.display());
    }
}
