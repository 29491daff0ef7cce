//! The node's WireGuard private key: `/run/flannel/wgkey` (or `$WIREGUARD_KEY_FILE`), in
//! `wg genkey`'s base64 form as Flannel writes it. Created once and reused, so a restart
//! keeps the public key in the lease and peers keep their sessions.
//!
//! Unlike Flannel (which creates the file world-readable and then narrows it to 0400), the file
//! is written to a temporary file created with mode 0600 in the same directory and linked
//! into place only when complete: nobody else can read it at any moment, and a crash never
//! leaves half a key. An existing file readable by group or others is narrowed to 0600.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use boringtun::x25519::{PublicKey, StaticSecret};
use flannel_model::WgKey;
use rand::RngCore;

/// Where Flannel keeps the key.
pub const DEFAULT_KEY_FILE: &str = "/run/flannel/wgkey";
/// Flannel's override.
pub const KEY_FILE_ENV: &str = "WIREGUARD_KEY_FILE";

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not read the WireGuard key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not parse private key from file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("could not write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A private key. Never printed.
#[derive(Clone)]
pub struct PrivateKey([u8; 32]);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    /// A new random key, clamped as `wg genkey` writes it.
    pub fn generate() -> PrivateKey {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        k[0] &= 248;
        k[31] &= 127;
        k[31] |= 64;
        PrivateKey(k)
    }

    /// The raw bytes (for the device).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public half.
    pub fn public_key(&self) -> WgKey {
        WgKey(PublicKey::from(&StaticSecret::from(self.0)).to_bytes())
    }

    /// Base64, as the key file holds it.
    fn to_text(&self) -> String {
        WgKey(self.0).to_string()
    }
}

/// The key file's path: `$WIREGUARD_KEY_FILE` if set, else Flannel's default.
pub fn key_path(env: Option<std::ffi::OsString>) -> PathBuf {
    env.map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE))
}

/// Read the key at `path`, or create it (mode 0600, atomically) if there is none.
/// Returns the key and whether it was created now.
pub fn load_or_create(path: &Path) -> Result<(PrivateKey, bool), KeyError> {
    match read(path) {
        Ok(k) => return Ok((k, false)),
        Err(KeyError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = PrivateKey::generate();
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(write_err)?;
    // tempfile creates the file with O_EXCL and mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".wgkey.")
        .tempfile_in(&dir)
        .map_err(write_err)?;
    tmp.write_all(key.to_text().as_bytes()).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok((key, true)),
        // Another process made one meanwhile: that one is the node's key.
        Err(e) if e.error.kind() == ErrorKind::AlreadyExists => Ok((read(path)?, false)),
        Err(e) => Err(write_err(e.error)),
    }
}

fn read(path: &Path) -> Result<PrivateKey, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let text = fs::read_to_string(path).map_err(read_err)?;
    let key: WgKey = text.trim().parse().map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        reason: format!("{e}"),
    })?;
    let mode = fs::metadata(path).map_err(read_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the WireGuard key file is readable by others; narrowing it to 0600"
        );
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(read_err)?;
    }
    Ok(PrivateKey(key.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/wgkey");
        let (k1, created) = load_or_create(&path).expect("created");
        assert!(created);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).expect("text");
        assert_eq!(
            text.len(),
            44,
            "base64 of 32 bytes, no newline (as Flannel writes it)"
        );
        let (k2, created) = load_or_create(&path).expect("reused");
        assert!(!created);
        assert_eq!(k1.bytes(), k2.bytes());
        assert_eq!(k1.public_key(), k2.public_key());
        // No temporary file is left next to it.
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("wgkey")]);
    }

    #[test]
    fn the_public_key_is_wireguards() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let private: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public = PrivateKey(private).public_key();
        assert_eq!(
            public.0,
            [
                0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e,
                0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e,
                0xaa, 0x9b, 0x4e, 0x6a
            ]
        );
    }

    #[test]
    fn a_key_written_by_flannel_or_wg_is_read_and_narrowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wgkey");
        let k = PrivateKey::generate();
        fs::write(&path, format!("{}\n", k.to_text())).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let (read, created) = load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(read.bytes(), k.bytes());
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::write(&path, "garbage").expect("write");
        let err = load_or_create(&path).expect_err("refused").to_string();
        assert!(
            err.starts_with("could not parse private key from file"),
            "{err}"
        );
        assert_eq!(format!("{k:?}"), "PrivateKey(..)");
    }

    #[test]
    fn the_path_follows_flannels_env() {
        assert_eq!(key_path(None), PathBuf::from("/run/flannel/wgkey"));
        assert_eq!(key_path(Some("/tmp/k".into())), PathBuf::from("/tmp/k"));
    }
}
