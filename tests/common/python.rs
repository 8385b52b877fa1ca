//! python3 reference scripts (`tests/python/`): fail with install instructions when python3 or
//! a module is missing, or skip loudly with `CELLSYMPHONY_ALLOW_NO_PYTHON=1`.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// `CELLSYMPHONY_ALLOW_NO_PYTHON=1`: tests whose python3 modules are missing skip (loudly).
pub const ALLOW_NO_PYTHON: &str = "CELLSYMPHONY_ALLOW_NO_PYTHON";

/// Whether the python modules may be missing (`CELLSYMPHONY_ALLOW_NO_PYTHON=1`).
pub fn skipping_allowed() -> bool {
    std::env::var(ALLOW_NO_PYTHON).as_deref() == Ok("1")
}

/// Whether `python3 -c "import <modules>"` succeeds (`modules`: comma-separated, as in Python).
pub fn has_modules(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// True when python3 imports `modules`; otherwise panics with `help` (what to install), or
/// with `CELLSYMPHONY_ALLOW_NO_PYTHON=1` prints `SKIPPED: no python3 with <modules>: <test>`
/// and returns false (the caller returns).
pub fn python_or_skip(test: &str, modules: &str, help: &str) -> bool {
    if has_modules(modules) {
        return true;
    }
    if skipping_allowed() {
        eprintln!("SKIPPED: no python3 with {modules}: {test}");
        false
    } else {
        panic!("{test}: python3 cannot import {modules}: {help}; set {ALLOW_NO_PYTHON}=1 to skip");
    }
}

/// `tests/python/<name>`.
pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("python").join(name)
}

/// Runs `python3 tests/python/<script> <args…>`; panics with its stderr (and `help`) when it
/// cannot start or fails.
pub fn run_python<S: AsRef<OsStr>>(script: &str, args: &[S], help: &str) {
    let path = python_script(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}; {help}", path.display()));
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(
        out.status.success(),
        "{} {shown:?} failed ({help}):\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
