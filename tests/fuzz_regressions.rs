//! Replays every committed fuzz input through the fuzz harness: the seed corpora in
//! `fuzz/corpus/<target>/` and every input that once crashed a target, kept in
//! `fixtures/fuzz/<target>/`. Plain `cargo test` thus re-checks past crashes and keeps the
//! harness compiling, without cargo-fuzz or a nightly toolchain. See docs/fuzzing.md.

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir/<target>/`, sorted; none if the folder does not exist.
fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable folder entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs each file through the target's harness and names the file that fails.
fn replay(target: &str, run: fn(&[u8]), files: &[PathBuf]) {
    for file in files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("fuzz target {target} fails on {}", file.display());
        }
    }
}

#[test]
fn every_seed_of_every_target_passes_the_harness() {
    for (target, run) in harness::TARGETS {
        let seeds = inputs(&root().join("fuzz/corpus"), target);
        assert!(!seeds.is_empty(), "fuzz/corpus/{target}/ has no seeds");
        replay(target, run, &seeds);
    }
}

#[test]
fn every_input_that_once_crashed_a_target_passes_now() {
    for (target, run) in harness::TARGETS {
        replay(target, run, &inputs(&root().join("fixtures/fuzz"), target));
    }
}

#[test]
fn every_corpus_and_crash_folder_belongs_to_a_target() {
    for dir in ["fuzz/corpus", "fixtures/fuzz"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("readable folder entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                harness::TARGETS.iter().any(|(t, _)| *t == name),
                "{dir}/{name} has no harness function"
            );
        }
    }
}

// One test per finding, stating the behaviour the fix gives (the input is also replayed above).

#[test]
fn an_order_word_after_the_hash_is_read_so_the_number_parses_to_itself() {
    use loyalty_bot::domain::OrderNumber;
    let number = OrderNumber::parse("#order-10011000").unwrap();
    assert_eq!(number.as_str(), "10011000");
    assert_eq!(OrderNumber::parse(number.as_str()), Ok(number));
}
