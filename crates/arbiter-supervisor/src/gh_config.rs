//! `gh` through the proxy: the `http_unix_socket` key of a loop's own
//! `GH_CONFIG_DIR/config.yml`, written before each round of a loop that opts in and
//! removed when it opts out.
//!
//! The file is `gh`'s own (aliases, editor, git protocol, comments): only the one
//! top-level key's line (and lines indented under it) is replaced, added or removed, the
//! rest kept byte for byte. It is written atomically, 0600, and a symlink is refused (the
//! directory is the loop's private one; a link there is someone else's plan).

use std::path::Path;

use arbiter_core::Result;

/// The key `gh` reads (gh ≥ 2.x): plain HTTP/1.1 over this unix socket.
pub(crate) const SOCKET_KEY: &str = "http_unix_socket";

/// Sets (`Some`) or removes (`None`) `http_unix_socket` in `dir/config.yml`. Writes only
/// when the text changes; removing from a missing file creates nothing.
pub(crate) fn set_socket(dir: &Path, socket: Option<&Path>) -> Result<()> {
    let path = dir.join("config.yml");
    // A link was never written through, so it holds no key of ours to remove.
    if socket.is_none() && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(());
    }
    let before = arbiter_process::private::read_no_link(&path)?;
    let value = socket.map(|s| yaml_string(&s.to_string_lossy()));
    let after = set_top_level_key(before.as_deref().unwrap_or_default(), SOCKET_KEY, value.as_deref());
    if before.as_deref() == Some(after.as_str()) || (before.is_none() && after.is_empty()) {
        return Ok(());
    }
    arbiter_process::private::replace_private(&path, after.as_bytes())
}

/// A YAML single-quoted scalar (`'` doubled): any path reads back as written.
fn yaml_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether `line` sets the top-level `key` (`key:` at column 0).
fn sets(line: &str, key: &str) -> bool {
    line.strip_prefix(key)
        .is_some_and(|rest| rest.trim_start_matches(' ').starts_with(':'))
}

/// `text` with the top-level `key` set to `value` (a YAML scalar) or removed (`None`).
/// Its line and any lines indented under it are replaced in place; a missing key is added
/// at the end. Every other line, comment and blank line stays as it was.
pub(crate) fn set_top_level_key(text: &str, key: &str, value: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut lines = text.split_inclusive('\n').peekable();
    let mut done = false;
    while let Some(line) = lines.next() {
        if !done && sets(line, key) {
            // What belongs to the key: lines indented under it (a block value).
            while lines.peek().is_some_and(|next| next.starts_with([' ', '\t'])) {
                lines.next();
            }
            if let Some(value) = value {
                out.push_str(&format!("{key}: {value}\n"));
            }
            done = true;
            continue;
        }
        out.push_str(line);
    }
    if !done && let Some(value) = value {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}: {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GH: &str = "# What gh wrote\nversion: \"1\"\ngit_protocol: https\n# the socket\nhttp_unix_socket: /old/sock\naliases:\n    co: pr checkout\n";

    #[test]
    fn the_key_is_replaced_in_place_and_everything_else_kept() {
        let edited = set_top_level_key(GH, SOCKET_KEY, Some("'/run/a.sock'"));
        assert_eq!(
            edited,
            "# What gh wrote\nversion: \"1\"\ngit_protocol: https\n# the socket\nhttp_unix_socket: '/run/a.sock'\naliases:\n    co: pr checkout\n"
        );
        // Idempotent.
        assert_eq!(set_top_level_key(&edited, SOCKET_KEY, Some("'/run/a.sock'")), edited);
        // Removed: its line only.
        assert_eq!(
            set_top_level_key(&edited, SOCKET_KEY, None),
            "# What gh wrote\nversion: \"1\"\ngit_protocol: https\n# the socket\naliases:\n    co: pr checkout\n"
        );
    }

    #[test]
    fn a_missing_key_is_added_at_the_end_and_lookalikes_are_left_alone() {
        let text = "editor: vim\n  http_unix_socket: nested\n# http_unix_socket: commented\nhttp_unix_socket_x: y";
        assert_eq!(
            set_top_level_key(text, SOCKET_KEY, Some("'/s'")),
            format!("{text}\nhttp_unix_socket: '/s'\n")
        );
        assert_eq!(set_top_level_key(text, SOCKET_KEY, None), text);
        assert_eq!(
            set_top_level_key("", SOCKET_KEY, Some("'/s'")),
            "http_unix_socket: '/s'\n"
        );
        // A block value under the key goes with it.
        assert_eq!(
            set_top_level_key("http_unix_socket:\n  /a\nb: c\n", SOCKET_KEY, Some("'/s'")),
            "http_unix_socket: '/s'\nb: c\n"
        );
        assert_eq!(yaml_string("/tmp/it's"), "'/tmp/it''s'");
    }

    #[test]
    fn the_file_is_written_private_and_a_link_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        // Removing from no file creates none.
        set_socket(dir.path(), None).unwrap();
        assert!(!config.exists());
        std::fs::write(&config, GH).unwrap();
        set_socket(dir.path(), Some(Path::new("/run/arbiter/web.sock"))).unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains("http_unix_socket: '/run/arbiter/web.sock'\naliases:\n    co: pr checkout\n"),
            "{text}"
        );
        assert!(text.starts_with("# What gh wrote\nversion: \"1\"\n"), "{text}");
        #[cfg(unix)]
        assert_eq!(arbiter_process::private::mode(&config), Some(0o600));
        set_socket(dir.path(), None).unwrap();
        assert!(!std::fs::read_to_string(&config).unwrap().contains(SOCKET_KEY));
        // Nothing but the file itself is left in the directory (no temp files).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        #[cfg(unix)]
        {
            let elsewhere = dir.path().join("elsewhere.yml");
            std::fs::write(&elsewhere, "editor: vim\n").unwrap();
            std::fs::remove_file(&config).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &config).unwrap();
            let err = set_socket(dir.path(), Some(Path::new("/s"))).unwrap_err();
            assert!(err.message.contains("symbolic link"), "{}", err.message);
            // A loop that does not opt in leaves a linked config alone.
            set_socket(dir.path(), None).unwrap();
            assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "editor: vim\n");
            assert!(std::fs::symlink_metadata(&config).unwrap().file_type().is_symlink());
        }
    }
}
