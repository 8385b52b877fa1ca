//! Scratch folders: [`scratch`] for one test (removed on drop), [`fixture_dir`] for fixtures a
//! test binary writes once and keeps for its lifetime.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A fresh, empty folder under the system temp dir (`cellsymphony-<name>-XXXXXX`), removed when
/// dropped. Derefs to its [`Path`], so `dir.join("x")` and `&dir` as `&Path` work.
pub struct Scratch(TempDir);

/// A [`Scratch`] folder for one test.
pub fn scratch(name: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("cellsymphony-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for {name}: {e}"));
    Scratch(dir)
}

impl Scratch {
    /// Same as [`scratch`].
    pub fn new(name: &str) -> Scratch {
        scratch(name)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Keeps the folder (not removed on drop) and returns its path.
    pub fn keep(self) -> PathBuf {
        self.0.keep()
    }

    /// Writes `contents` to `<dir>/<name>` and returns that path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// `<dir>/<name>` as raw little-endian f32.
    pub fn write_f32(&self, name: &str, data: &[f32]) -> PathBuf {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.write(name, bytes)
    }

    pub fn write_json(&self, name: &str, value: &serde_json::Value) -> PathBuf {
        self.write(name, value.to_string())
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        let path = self.path().join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// `<dir>/<name>` as raw little-endian f64.
    pub fn read_f64(&self, name: &str) -> Vec<f64> {
        self.read(name)
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    pub fn read_json(&self, name: &str) -> serde_json::Value {
        serde_json::from_slice(&self.read(name))
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
    }
}

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

/// An empty folder `<cargo target tmp>/<name>-<pid>` for fixtures written once per test
/// binary (held in a `OnceLock`, so never dropped). Folders of the same `name` left by
/// finished processes are removed first, so runs do not pile up copies, and test binaries of
/// other checkouts sharing the target dir keep theirs while they run.
pub fn fixture_dir(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let prefix = format!("{name}-");
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !process_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = root.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Whether process `pid` still runs (Linux: `/proc/<pid>`; elsewhere assumed alive, so
/// nothing is removed).
fn process_alive(pid: &str) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid).exists()
}
