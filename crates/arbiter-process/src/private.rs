//! Files private to this user: what arbiter creates (the SQLite store, round logs, prompt
//! and log directories) is readable by its owner only, and a symlink is never followed
//! where arbiter creates, appends to, chmods or deletes — another local user who can plant
//! a link must not make arbiter write, chmod or delete somewhere else.
//!
//! Unix: files 0600, directories 0700, `O_NOFOLLOW` opens and an owner check. Windows:
//! files are created in the user's profile, whose ACL is already private; symlinks are
//! refused the same way (by `symlink_metadata`).

use std::fs::File;
use std::path::Path;

use arbiter_core::{Error, Result};

fn refused(path: &Path, why: &str) -> Error {
    Error::bad_input(format!("refusing {}: {why}", path.display()))
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::internal(format!("cannot {what} {}: {e}", path.display()))
}

/// Creates `dir` and its missing parents (0700), or checks the existing one: a real
/// directory (not a symlink) owned by this user, then made 0700.
pub fn private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| io(dir, "create", e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io(dir, "inspect", e))?;
    if meta.file_type().is_symlink() {
        return Err(refused(
            dir,
            "it is a symbolic link; arbiter keeps private files in a real directory",
        ));
    }
    if !meta.is_dir() {
        return Err(refused(dir, "it is not a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // chmod through a descriptor opened without following links (no race with a swap).
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nofollow() | nix::fcntl::OFlag::O_DIRECTORY.bits())
            .open(dir)
            .map_err(|e| io(dir, "open", e))?;
        check_owner(dir, &handle)?;
        handle
            .set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io(dir, "make private", e))?;
    }
    Ok(())
}

/// Opens `path` for appending, creating it 0600; refuses a symlink or a file owned by
/// someone else, and makes an existing file 0600.
pub fn append_private(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    open_private(path, &mut options)
}

/// Creates `path` 0600 if it does not exist (for a file another library then opens, like
/// the SQLite store): returns whether it was created. An existing file or a link to one
/// is left as it is; a link to nothing is refused (creating would write through it).
pub fn create_private(path: &Path) -> Result<bool> {
    if std::fs::metadata(path).is_ok() {
        return Ok(false);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    match open_private(path, &mut options) {
        Ok(_) => Ok(true),
        Err(_) if std::fs::metadata(path).is_ok_and(|m| m.is_file()) => Ok(false),
        Err(e) => Err(e),
    }
}

fn open_private(path: &Path, options: &mut std::fs::OpenOptions) -> Result<File> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(refused(path, "it is a symbolic link"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600).custom_flags(nofollow());
        let file = options.open(path).map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => refused(path, "it is a symbolic link"),
            _ => io(path, "open", e),
        })?;
        check_owner(path, &file)?;
        let meta = file.metadata().map_err(|e| io(path, "inspect", e))?;
        if !meta.is_file() {
            return Err(refused(path, "it is not a regular file"));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io(path, "make private", e))?;
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        options.open(path).map_err(|e| io(path, "open", e))
    }
}

/// Replaces `path` atomically with `bytes`, 0600: a fresh private file beside it (created
/// exclusively, never through a link), flushed, then renamed over it. A symlink at `path`,
/// or a file there that belongs to someone else, is refused and left as it is.
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err(refused(path, "it is a symbolic link"));
        }
        if !meta.is_file() {
            return Err(refused(path, "it is not a regular file"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let me = nix::unistd::geteuid().as_raw();
            if meta.uid() != me {
                return Err(refused(
                    path,
                    &format!("it belongs to user id {}, not to this user ({me})", meta.uid()),
                ));
            }
        }
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // tempfile creates it exclusively, readable and writable by its owner only.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempfile_in(dir)
        .map_err(|e| io(path, "write", e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io(path, "write", e))?;
    tmp.persist(path).map_err(|e| io(path, "replace", e.error))?;
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a text file that must not be a symbolic link (`None`: there is none).
pub fn read_no_link(path: &Path) -> Result<Option<String>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, "inspect", e)),
        Ok(meta) if meta.file_type().is_symlink() => return Err(refused(path, "it is a symbolic link")),
        Ok(_) => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nofollow());
    }
    let mut file = options.open(path).map_err(|e| io(path, "open", e))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(|e| io(path, "read", e))?;
    Ok(Some(text))
}

/// A file holding a secret (a token) must not be readable by its group or others: the
/// error says the `chmod` to run.
pub fn check_secret_file(path: &Path) -> std::result::Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            return Err(format!(
                "{} is readable by its group or others (mode {mode:04o}); run: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The permission bits of `path` (`None` where there are none, or it is missing).
pub fn mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(unix)]
fn nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

#[cfg(unix)]
fn check_owner(path: &Path, file: &File) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|e| io(path, "inspect", e))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refused(
            path,
            &format!("it belongs to user id {}, not to this user ({me})", meta.uid()),
        ));
    }
    Ok(())
}
