//! The unix socket listener (0600: only this user may talk to the fake through it).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Binds `path`, replacing a stale socket file left there (never any other kind of file).
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
