//! The rendered delegate configs kept for DEL: `dataDir/<containerID>` (Go
//! `saveScratchNetConf` / `consumeScratchNetConf`).
//!
//! The directory is created with mode 0700 and the file with 0600 like the Go plugin; unlike
//! it the file is written atomically (temporary file in the same directory, fsync, rename), so
//! a crash never leaves a truncated config that DEL could not use.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The saved config could not be written, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The container ID cannot name a file in `dataDir`.
    #[error("container ID {0:?} cannot be used as a file name")]
    BadId(String),
    /// Creating the directory or writing the file failed.
    #[error("failed to save the delegate config to {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading the file failed (other than it not existing).
    #[error("failed to read the saved delegate config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The file holding the config of `container_id`.
pub fn path_for(data_dir: &Path, container_id: &str) -> Result<PathBuf, StoreError> {
    // The CNI name rule (checked by the caller) already excludes these; stay safe anyway.
    if container_id.is_empty()
        || container_id.contains('/')
        || container_id == "."
        || container_id == ".."
    {
        return Err(StoreError::BadId(container_id.to_string()));
    }
    Ok(data_dir.join(container_id))
}

/// Saves `config` for `container_id`, replacing any earlier one.
pub fn save(data_dir: &Path, container_id: &str, config: &[u8]) -> Result<PathBuf, StoreError> {
    let path = path_for(data_dir, container_id)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(write_err(data_dir))?;
    // tempfile creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{container_id}."))
        .tempfile_in(data_dir)
        .map_err(write_err(data_dir))?;
    tmp.write_all(config).map_err(write_err(&path))?;
    tmp.as_file().sync_all().map_err(write_err(&path))?;
    tmp.persist(&path).map_err(|e| StoreError::Write {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(path)
}

/// The saved config of `container_id`, or `None` when there is none.
pub fn load(data_dir: &Path, container_id: &str) -> Result<Option<(PathBuf, Vec<u8>)>, StoreError> {
    let path = path_for(data_dir, container_id)?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some((path, bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read { path, source }),
    }
}

/// Removes a saved config; errors are ignored (per the CNI spec, DEL may go on).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/flannel");
        let path = save(&data, "c1", b"{\"x\":1}").unwrap();
        assert_eq!(path, data.join("c1"));
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        save(&data, "c1", b"{}").unwrap();
        let (p, bytes) = load(&data, "c1").unwrap().unwrap();
        assert_eq!(
            (p.as_path(), bytes.as_slice()),
            (path.as_path(), &b"{}"[..])
        );
        // Only the config itself is left in the directory.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
        remove(&path);
        assert!(load(&data, "c1").unwrap().is_none());
        remove(&path);
    }

    #[test]
    fn rejects_ids_that_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["", "..", ".", "a/b"] {
            assert!(
                matches!(save(dir.path(), id, b"{}"), Err(StoreError::BadId(_))),
                "{id}"
            );
        }
    }
}
