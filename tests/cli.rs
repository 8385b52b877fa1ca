//! The `cellsymphony` binary: help on every subcommand, and clear errors (not panics) for a
//! corrupt model file and a missing data folder.

use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellsymphony"))
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["label", "train", "eval", "export", "classify", "pipeline"] {
        let out = cli().args([sub, "--help"]).output().expect("binary runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help failed");
        assert!(text.contains("Usage: cellsymphony"), "{sub} --help printed: {text}");
    }
}

#[test]
fn truncated_model_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("cellsymphony-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.safetensors");
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let out = cli()
        .args(["export", "--model"])
        .arg(&path)
        .arg("--out")
        .arg(dir.join("out.safetensors"))
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("broken.safetensors"), "error should name the file: {err}");
    assert!(!err.contains("panicked"), "must not panic: {err}");
    assert!(!dir.join("out.safetensors").exists(), "no output may be written on error");
}

#[test]
fn missing_data_folder_says_how_to_fetch_it() {
    let out = cli()
        .args(["label", "--data", "/nonexistent/cellsymphony-data"])
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("fetch_data.sh"), "error should say how to get the data: {err}");
}
