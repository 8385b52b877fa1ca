//! Atomic file writes: the bytes go to a temporary file beside the target, which is flushed to
//! disk and then renamed over the target, so a reader sees the old file or the complete new
//! one, never a partial write. Native only (wasm32 has no file system).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed step of an atomic write: which step, on which file, and the I/O error.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct AtomicWriteError {
    /// The step that failed: "create a temporary file beside", "write", "fsync" or "rename a
    /// temporary file onto".
    pub action: &'static str,
    /// The file the step was about (the target).
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

/// A file being written atomically: write to it (it is a [`Write`]), then [`commit`] it.
/// Dropped without `commit`, the temporary file is removed and the target is left untouched.
///
/// The temporary file is `.<file name>.<random>.tmp` in the target's directory (the same file
/// system, so the rename is atomic), created with the permissions `File::create` would give
/// (0o666 less the umask), not tempfile's private 0o600.
///
/// [`commit`]: AtomicFile::commit
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file beside `target`. The target's directory must exist.
    pub fn create(target: &Path) -> Result<Self, AtomicWriteError> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = builder
            .tempfile_in(dir)
            .map_err(|source| AtomicWriteError {
                action: "create a temporary file beside",
                path: target.to_path_buf(),
                source,
            })?;
        Ok(Self {
            temp,
            target: target.to_path_buf(),
        })
    }

    /// The file this will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes the data to disk (fsync), renames the temporary file over the target and, where
    /// the platform can open a directory, syncs the directory so the rename itself persists.
    pub fn commit(mut self) -> Result<(), AtomicWriteError> {
        let target = self.target;
        let fail = |action, source| AtomicWriteError {
            action,
            path: target.clone(),
            source,
        };
        self.temp.flush().map_err(|e| fail("write", e))?;
        self.temp
            .as_file()
            .sync_all()
            .map_err(|e| fail("fsync", e))?;
        self.temp
            .persist(&target)
            .map_err(|e| fail("rename a temporary file onto", e.error))?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.temp.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

/// Writes `bytes` to `path` atomically ([`AtomicFile`]). The directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes).map_err(|source| AtomicWriteError {
        action: "write",
        path: path.to_path_buf(),
        source,
    })?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
        #[cfg(unix)]
        {
            // The same permissions as a file made by File::create (0o666 less the umask).
            use std::os::unix::fs::PermissionsExt;
            let probe = dir.path().join("probe");
            std::fs::File::create(&probe).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&probe));
        }
    }

    #[test]
    fn dropped_without_commit_leaves_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        std::fs::write(&path, b"old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("x.bin");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("x.bin"), "{err}");
    }
}
