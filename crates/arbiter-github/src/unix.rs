//! The unix socket listener: `gh` reaches the proxy through its `http_unix_socket` key.
//!
//! The socket is made 0600 in a directory only this user can enter: a missing directory is
//! created 0700; an existing one must be a real directory of this user with no access
//! for group or others (a shared directory like `/tmp` is refused, not chmod-ed). A
//! symlink at the socket's path is refused; a socket a live proxy answers on is refused;
//! a stale one (nobody listens) is replaced.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use arbiter_core::{Error, Result};

fn refused(path: &Path, why: &str) -> Error {
    Error::bad_input(format!("--socket {}: {why}", path.display()))
}

pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if std::fs::symlink_metadata(dir).is_err() {
        arbiter_process::private::private_dir(dir).map_err(|e| refused(path, &e.message))?;
    }
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| refused(path, &format!("cannot inspect its directory: {e}")))?;
    if !meta.is_dir() {
        return Err(refused(
            path,
            "its directory is not a directory (or is a symbolic link)",
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(refused(
            path,
            &format!(
                "its directory {} must belong to this user and be private (mode 0700; it is {:04o}); \
                 put the socket in a directory of its own",
                dir.display(),
                meta.mode() & 0o7777
            ),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refused(path, "it is a symbolic link"));
        }
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(refused(path, "a proxy is already listening there"));
            }
            std::fs::remove_file(path).map_err(|e| refused(path, &format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => return Err(refused(path, "a file that is not a socket is there")),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| refused(path, &format!("cannot listen: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| refused(path, &format!("cannot make it private: {e}")))?;
    Ok(listener)
}
