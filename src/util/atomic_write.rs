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

/// The file an atomic write replaces: `target`, or the file a symlink at `target` points to
/// (followed to its end). Errors if that exists and is not a regular file.
fn resolve_target(target: &Path) -> Result<PathBuf, AtomicWriteError> {
    let refuse = |path: &Path, what: &str| AtomicWriteError {
        action: "replace",
        path: path.to_path_buf(),
        source: std::io::Error::other(format!(
            "it is {what}, not a regular file; only regular files are replaced: choose a file path"
        )),
    };
    let resolved = match std::fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(target) {
            Ok(p) => p,
            // A dangling link: create the file it names.
            Err(_) => {
                let link = std::fs::read_link(target).map_err(|source| AtomicWriteError {
                    action: "read the symlink",
                    path: target.to_path_buf(),
                    source,
                })?;
                target.parent().map_or(link.clone(), |d| d.join(link))
            }
        },
        _ => target.to_path_buf(),
    };
    match std::fs::metadata(&resolved) {
        Ok(m) if m.is_file() => Ok(resolved),
        Ok(m) if m.is_dir() => Err(refuse(&resolved, "a directory")),
        Ok(_) => Err(refuse(&resolved, "a FIFO, socket or device")),
        Err(_) => Ok(resolved),
    }
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
    ///
    /// A symlink is written through (the file it points to is replaced, the link kept); a
    /// target that exists but is not a regular file (a FIFO, a device such as `/dev/full`, a
    /// directory) is refused, so nothing but a regular file is ever replaced.
    pub fn create(target: &Path) -> Result<Self, AtomicWriteError> {
        let target = &resolve_target(target)?;
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

    /// Issue 13, point 1: links are written through, non-regular files are never replaced.
    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_and_special_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.csv");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A directory (and, on Linux, a device) is refused and left as it was.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = write_atomic(&sub, b"x").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(sub.is_dir());
        if Path::new("/dev/null").exists() {
            let err = write_atomic(Path::new("/dev/null"), b"x").unwrap_err();
            assert!(err.to_string().contains("device"), "{err}");
        }
        // Nothing is left behind by a refused or failed write.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
        assert!(left.is_empty(), "{left:?}");
    }

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
