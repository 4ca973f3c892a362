//! `gh` through the proxy: the `http_unix_socket` key of a loop's own
//! `GH_CONFIG_DIR/config.yml`, written before each round of a loop that opts in and
//! removed when it opts out.
//!
//! The file is `gh`'s own (aliases, editor, git protocol, comments): only the one
//! top-level key's line (and lines indented under it) is replaced, added or removed, the
//! rest kept byte for byte. It is written atomically, 0600, and a symlink is refused (the
//! directory is the loop's private one; a link there is someone else's plan).
//!
//! What `gh` (go-yaml) reads, and so what the edit follows: the first document only (a
//! key after `---` or `...` is ignored), the first of duplicate keys, a key quoted or not,
//! a byte-order mark before the first line, CRLF line ends. So every top-level
//! occurrence of the key in the first document is replaced (the first) or dropped (the
//! others), a missing key is added at the end of the first document, a file whose top
//! level is not a block mapping (`{…}`, a list) is refused rather than broken, and each
//! line keeps its own line end. Removing takes out only a socket arbiter wrote (in a
//! supervisor's `watch-*` directory): a socket the user set for a proxy of their own
//! stays.

use std::path::Path;

use arbiter_core::{Error, Result};

/// The key `gh` reads (gh ≥ 2.x): plain HTTP/1.1 over this unix socket.
pub(crate) const SOCKET_KEY: &str = "http_unix_socket";

/// A `config.yml` larger than this is not gh's (gh writes a few hundred bytes): refused
/// rather than read whole before every round.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Sets (`Some`) or removes (`None`) `http_unix_socket` in `dir/config.yml`. Writes only
/// when the text changes; removing from a missing file creates nothing, and removes only
/// a socket of a supervisor ([`is_ours`]).
pub(crate) fn set_socket(dir: &Path, socket: Option<&Path>) -> Result<()> {
    match socket {
        Some(socket) => edit_file(
            &dir.join("config.yml"),
            &Edit::Set(yaml_string(&socket.to_string_lossy())),
        ),
        None => unset_socket(dir, &is_ours),
    }
}

/// Removes `http_unix_socket` from `dir/config.yml` where its value is a socket `which`
/// says yes to (a stopping proxy's own); a link or a missing file is left alone.
pub(crate) fn unset_socket(dir: &Path, which: &dyn Fn(&str) -> bool) -> Result<()> {
    let path = dir.join("config.yml");
    // A link was never written through, so it holds no key of ours to remove.
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => edit_file(&path, &Edit::Remove(which)),
        _ => Ok(()),
    }
}

/// `path` edited (see [`edit_top_level_key`]); written only when the text changes.
fn edit_file(path: &Path, edit: &Edit<'_>) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.len() > MAX_CONFIG_BYTES
    {
        return Err(Error::bad_input(format!(
            "refusing {}: it is {} bytes, more than a gh config ({MAX_CONFIG_BYTES} at most)",
            path.display(),
            meta.len()
        )));
    }
    let before = arbiter_process::private::read_no_link(path)?;
    let text = before.as_deref().unwrap_or_default();
    let after = match edit_top_level_key(text, SOCKET_KEY, edit) {
        Ok(after) => after,
        // No line of ours can be in a file whose top level is not a block mapping: a
        // loop that does not opt in runs with it as it is.
        Err(_) if matches!(edit, Edit::Remove(_)) => return Ok(()),
        Err(why) => {
            return Err(Error::bad_input(format!(
                "refusing to edit {}: {why}; set `{SOCKET_KEY}: <socket>` there yourself or give the loop its own gh_config_dir",
                path.display()
            )));
        }
    };
    if before.as_deref() == Some(after.as_str()) || (before.is_none() && after.is_empty()) {
        return Ok(());
    }
    arbiter_process::private::replace_private(path, after.as_bytes())
}

/// Whether a socket path is one a supervisor wrote: `<runtime>/watch-<pid>-<n>/<loop>.sock`.
pub(crate) fn is_ours(value: &str) -> bool {
    let path = Path::new(value);
    path.extension().is_some_and(|e| e == "sock")
        && path
            .parent()
            .and_then(Path::file_name)
            .and_then(|d| d.to_str())
            .is_some_and(|d| d.starts_with("watch-"))
}

/// A YAML single-quoted scalar (`'` doubled): any path reads back as written.
fn yaml_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What to do with the key.
pub(crate) enum Edit<'a> {
    /// Set it to this YAML scalar.
    Set(String),
    /// Remove the occurrences whose value this says yes to.
    Remove(&'a dyn Fn(&str) -> bool),
}

/// The value of a top-level `line` setting `key` (`Some("")` for a blank or block value),
/// or `None` when the line does not set it. The key may be quoted; the value is unquoted.
fn value_of(line: &str, key: &str) -> Option<String> {
    let rest = [format!("\"{key}\""), format!("'{key}'"), key.to_string()]
        .iter()
        .find_map(|k| line.strip_prefix(k.as_str()))?;
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])) {
        return None;
    }
    Some(scalar(rest.trim()))
}

/// A one-line YAML scalar's text: quotes undone, a trailing comment dropped.
fn scalar(text: &str) -> String {
    if let Some(body) = text.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    out.push('\'');
                }
                '\'' => break,
                c => out.push(c),
            }
        }
        return out;
    }
    if let Some(body) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => break,
                c => out.push(c),
            }
        }
        return out;
    }
    let plain = match text.find(" #") {
        Some(at) => &text[..at],
        None => text,
    };
    plain.trim().to_string()
}

/// A blank line, or one holding only a comment.
fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// What follows a document marker line (`---` or `...` alone or followed by white space).
fn marker<'l>(line: &'l str, mark: &str) -> Option<&'l str> {
    let rest = line.strip_prefix(mark)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])).then(|| rest.trim())
}

/// Whether the first content line of a document opens a block mapping at column 0: a
/// `key:` (then white space or the end), not a flow collection, a list, a block scalar
/// or an indented mapping (a key added at column 0 would break those).
fn opens_block_mapping(line: &str) -> bool {
    let t = line.trim_end();
    if t.starts_with([' ', '\t', '{', '[', '|', '>']) || t == "-" || t.starts_with("- ") || t.starts_with("-\t") {
        return false;
    }
    t.match_indices(':')
        .any(|(at, _)| t[at + 1..].is_empty() || t[at + 1..].starts_with([' ', '\t']))
}

/// `text` with the top-level `key` of its first document set or removed (see the module
/// docs). `Err`: the first document's top level is not a block mapping (what is wrong).
pub(crate) fn edit_top_level_key(text: &str, key: &str, edit: &Edit<'_>) -> std::result::Result<String, String> {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(body) => ("\u{feff}", body),
        None => ("", text),
    };
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    let newline = match lines.first() {
        Some(first) if first.ends_with("\r\n") => "\r\n",
        _ => "\n",
    };
    // The first document: after a leading `---` (directives before it), up to the next
    // `---` or `...`.
    let (mut start, mut end) = (0, lines.len());
    let (mut started, mut content) = (false, false);
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = marker(line, "---") {
            if content || started {
                end = i;
                break;
            }
            if !(rest.is_empty() || rest.starts_with('#')) {
                return Err(format!("its first document starts on its `---` line ({rest:?})"));
            }
            (start, started) = (i + 1, true);
        } else if marker(line, "...").is_some() {
            end = i;
            break;
        } else {
            // A directive (`%YAML`) before the first marker is not content.
            let directive = line.starts_with('%') && !started;
            if content || is_blank_or_comment(line) || directive {
                continue;
            }
            if !opens_block_mapping(line) {
                return Err("its top level is not a block mapping of `key: value` lines".into());
            }
            content = true;
        }
    }
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(bom);
    let mut set = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let value = (i >= start && i < end).then(|| value_of(line, key)).flatten();
        let Some(value) = value else {
            if i == end
                && !set
                && let Edit::Set(v) = edit
            {
                out.push_str(&format!("{key}: {v}{newline}"));
                set = true;
            }
            out.push_str(line);
            i += 1;
            continue;
        };
        // What belongs to the key: lines indented under it (a block value), and blank
        // lines between them.
        let mut next = i + 1;
        loop {
            let more = lines[next..end.max(next)]
                .iter()
                .position(|l| !l.trim().is_empty())
                .map(|p| next + p)
                .filter(|n| lines[*n].starts_with([' ', '\t']));
            match more {
                Some(n) => next = n + 1,
                None => break,
            }
        }
        let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        match edit {
            Edit::Set(v) if !set => {
                out.push_str(&format!("{key}: {v}{ending}"));
                set = true;
            }
            Edit::Set(_) => {}
            Edit::Remove(ours) if ours(&value) => {}
            Edit::Remove(_) => lines[i..next].iter().for_each(|l| out.push_str(l)),
        }
        i = next;
    }
    if !set && let Edit::Set(v) = edit {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(newline);
        }
        out.push_str(&format!("{key}: {v}{newline}"));
    }
    Ok(out)
}
#[cfg(test)]
mod tests {
    use super::*;

    const GH: &str = "# What gh wrote\nversion: \"1\"\ngit_protocol: https\n# the socket\nhttp_unix_socket: /old/sock\naliases:\n    co: pr checkout\n";

    /// A socket as a supervisor names it.
    const OURS: &str = "/run/arbiter/watch-7-1/web.sock";

    fn set(text: &str, value: &str) -> String {
        edit_top_level_key(text, SOCKET_KEY, &Edit::Set(yaml_string(value))).unwrap()
    }

    fn remove(text: &str) -> String {
        edit_top_level_key(text, SOCKET_KEY, &Edit::Remove(&is_ours)).unwrap()
    }

    #[test]
    fn the_key_is_replaced_in_place_and_everything_else_kept() {
        let edited = set(GH, OURS);
        assert_eq!(
            edited,
            format!(
                "# What gh wrote\nversion: \"1\"\ngit_protocol: https\n# the socket\nhttp_unix_socket: '{OURS}'\naliases:\n    co: pr checkout\n"
            )
        );
        // Idempotent.
        assert_eq!(set(&edited, OURS), edited);
        // Removed: its line only.
        assert_eq!(
            remove(&edited),
            "# What gh wrote\nversion: \"1\"\ngit_protocol: https\n# the socket\naliases:\n    co: pr checkout\n"
        );
    }

    #[test]
    fn a_missing_key_is_added_at_the_end_and_lookalikes_are_left_alone() {
        let text = "editor: vim\n  http_unix_socket: nested\n# http_unix_socket: commented\nhttp_unix_socket_x: y";
        assert_eq!(set(text, "/s"), format!("{text}\nhttp_unix_socket: '/s'\n"));
        assert_eq!(remove(text), text);
        assert_eq!(set("", "/s"), "http_unix_socket: '/s'\n");
        // A block value under the key goes with it, blank lines inside it too.
        assert_eq!(
            set("http_unix_socket:\n  /a\n\n  /b\nb: c\n", "/s"),
            "http_unix_socket: '/s'\nb: c\n"
        );
        assert_eq!(yaml_string("/tmp/it's"), "'/tmp/it''s'");
    }

    /// What gh 2.23 itself writes (`gh config set editor vim` in an empty directory).
    const WRITTEN_BY_GH: &str = "# What protocol to use when performing git operations. Supported values: ssh, https\ngit_protocol: https\n# What editor gh should run when creating issues, pull requests, etc. If blank, will refer to environment.\neditor: vim\n# When to interactively prompt. This is a global config that cannot be overridden by hostname. Supported values: enabled, disabled\nprompt: enabled\n# A pager program to send command output to, e.g. \"less\". Set the value to \"cat\" to disable the pager.\npager:\n# Aliases allow you to create nicknames for gh commands\naliases:\n    co: pr checkout\n# The path to a unix socket through which send HTTP connections. If blank, HTTP traffic will be handled by net/http.DefaultTransport.\nhttp_unix_socket:\n# What web browser gh should use when opening URLs. If blank, will refer to environment.\nbrowser:\n";

    #[test]
    fn gh_s_own_file_gets_the_value_on_its_blank_key() {
        let edited = set(WRITTEN_BY_GH, OURS);
        assert_eq!(
            edited,
            WRITTEN_BY_GH.replace("http_unix_socket:\n", &format!("http_unix_socket: '{OURS}'\n"))
        );
        assert_eq!(remove(&edited), WRITTEN_BY_GH.replace("http_unix_socket:\n", ""));
    }

    /// The shapes gh reads in ways a naive line edit misses: each one, set and removed,
    /// is read by gh as intended (see `real_gh_reads_what_was_written` for gh itself).
    const ATTACKS: &[(&str, &str, &str)] = &[
        // (name, file, what gh must read for `editor` after any edit)
        ("bom", "\u{feff}http_unix_socket: /old\neditor: vim\n", "vim"),
        ("crlf", "editor: vim\r\nhttp_unix_socket: /old\r\n", "vim"),
        ("quoted key", "\"http_unix_socket\": /old\neditor: vim\n", "vim"),
        ("single-quoted key", "'http_unix_socket' : '/old'\neditor: vim\n", "vim"),
        (
            "duplicates",
            "editor: vim\nhttp_unix_socket: /first\nhttp_unix_socket: /second\n",
            "vim",
        ),
        (
            "second document",
            "editor: vim\n---\nhttp_unix_socket: /second\n",
            "vim",
        ),
        ("document end", "---\neditor: vim\n...\n# trailing\n", "vim"),
        (
            "comment after the value",
            "http_unix_socket: /old # mine\neditor: vim\n",
            "vim",
        ),
        ("no final newline", "editor: vim", "vim"),
    ];

    #[test]
    fn every_shape_gh_reads_gets_one_key_in_its_first_document() {
        for (name, text, _) in ATTACKS {
            let edited = set(text, OURS);
            // The first document holds the key once, as the first of its top-level keys
            // named so, before any document marker.
            let first_doc: Vec<&str> = edited
                .trim_start_matches('\u{feff}')
                .lines()
                .skip_while(|l| *l == "---")
                .take_while(|l| *l != "---" && *l != "...")
                .collect();
            let keys: Vec<String> = first_doc.iter().filter_map(|l| value_of(l, SOCKET_KEY)).collect();
            assert_eq!(keys, [OURS], "{name}: {edited:?}");
            assert!(edited.contains("editor: vim"), "{name}: {edited:?}");
            // Line ends and the byte-order mark are kept.
            assert_eq!(edited.starts_with('\u{feff}'), text.starts_with('\u{feff}'), "{name}");
            assert_eq!(
                edited.matches('\n').count() == edited.matches("\r\n").count(),
                text.contains("\r\n"),
                "{name}: {edited:?}"
            );
            // Removed again: no value of ours is left in the first document, the rest is.
            let removed = remove(&edited);
            assert!(!removed.contains(OURS), "{name}: {removed:?}");
            assert!(removed.contains("editor: vim"), "{name}: {removed:?}");
        }
        // A document marker keeps the key before it.
        assert_eq!(
            set("editor: vim\n---\nhttp_unix_socket: /second\n", "/s"),
            "editor: vim\nhttp_unix_socket: '/s'\n---\nhttp_unix_socket: /second\n"
        );
        assert_eq!(set("a: b\n...\n", "/s"), "a: b\nhttp_unix_socket: '/s'\n...\n");
        assert_eq!(set("a: b\r\n", "/s"), "a: b\r\nhttp_unix_socket: '/s'\r\n");
    }

    #[test]
    fn a_socket_the_user_set_is_not_removed() {
        let mine = "http_unix_socket: /home/me/github.sock\neditor: vim\n";
        assert_eq!(remove(mine), mine);
        let quoted = "http_unix_socket: \"/run/arbiter/watch-1-2/a.sock\"\n";
        assert_eq!(remove(quoted), "");
        assert!(is_ours("/tmp/arbiter-me/watch-12-3/loop-0123456789abcdef.sock"));
        assert!(!is_ours("/tmp/watch-1/x"));
        assert!(!is_ours(""));
        assert_eq!(scalar("'it''s' # c"), "it's");
        assert_eq!(scalar("\"a\\\"b\""), "a\"b");
        assert_eq!(scalar("/a/b # c"), "/a/b");
    }

    #[test]
    fn a_top_level_that_is_not_a_block_mapping_is_refused() {
        for text in [
            "{editor: vim}\n",
            "[a, b]\n",
            "- a\n",
            "  editor: vim\n",
            "just text\n",
            "--- {editor: vim}\n",
            "# c\n|\n  x\n",
        ] {
            let err = edit_top_level_key(text, SOCKET_KEY, &Edit::Set("'/s'".into())).unwrap_err();
            assert!(
                err.contains("not a block mapping") || err.contains("`---`"),
                "{text:?}: {err}"
            );
        }
        // Directives, comments and a leading marker are fine.
        assert_eq!(
            set("%YAML 1.2\n---\n# c\na: b\n", "/s"),
            "%YAML 1.2\n---\n# c\na: b\nhttp_unix_socket: '/s'\n"
        );
    }

    /// Each attack file, edited by `set_socket`, read by the real gh: it sees the socket
    /// (and the other keys) after setting, and no socket after removing.
    #[test]
    fn real_gh_reads_what_was_written() {
        let gh = std::path::PathBuf::from("/usr/bin/gh");
        if !gh.exists() {
            assert!(std::env::var_os("CI").is_none(), "/usr/bin/gh is missing under CI");
            eprintln!("SKIPPED: /usr/bin/gh is not installed; the test needs the real gh");
            return;
        }
        let get = |dir: &Path, key: &str| {
            let out = std::process::Command::new(&gh)
                .args(["config", "get", key])
                .env("GH_CONFIG_DIR", dir)
                .env_remove("GH_TOKEN")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim_end().to_string()
        };
        let files = ATTACKS
            .iter()
            .map(|(name, text, editor)| (*name, text.to_string(), *editor))
            .chain([("gh's own", WRITTEN_BY_GH.to_string(), "vim")]);
        for (name, text, editor) in files {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("config.yml"), &text).unwrap();
            set_socket(dir.path(), Some(Path::new(OURS))).unwrap();
            assert_eq!(get(dir.path(), SOCKET_KEY), OURS, "{name}");
            assert_eq!(get(dir.path(), "editor"), editor, "{name}");
            set_socket(dir.path(), None).unwrap();
            assert_eq!(get(dir.path(), SOCKET_KEY), "", "{name}");
            assert_eq!(get(dir.path(), "editor"), editor, "{name}");
        }
    }

    /// Two supervisors sharing a profile's directory write at once: every state of the
    /// file is whole (one key, the other keys kept), whichever write lands last.
    #[test]
    fn concurrent_writers_never_tear_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yml"), WRITTEN_BY_GH).unwrap();
        let sockets = ["/run/a/watch-1-1/one.sock", "/run/b/watch-2-1/one.sock"];
        std::thread::scope(|scope| {
            for socket in sockets {
                let dir = dir.path();
                scope.spawn(move || {
                    for _ in 0..100 {
                        set_socket(dir, Some(Path::new(socket))).unwrap();
                        set_socket(dir, None).unwrap();
                        set_socket(dir, Some(Path::new(socket))).unwrap();
                    }
                });
            }
            let dir = dir.path();
            scope.spawn(move || {
                for _ in 0..300 {
                    let text = std::fs::read_to_string(dir.join("config.yml")).unwrap();
                    let keys = text.lines().filter(|l| value_of(l, SOCKET_KEY).is_some()).count();
                    assert!(keys <= 1, "{text}");
                    assert!(
                        text.contains("editor: vim\n") && text.contains("    co: pr checkout\n"),
                        "{text}"
                    );
                }
            });
        });
        let text = std::fs::read_to_string(dir.path().join("config.yml")).unwrap();
        assert!(sockets.iter().any(|s| text.contains(s)), "{text}");
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_file_is_written_private_and_a_link_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        // Removing from no file creates none.
        set_socket(dir.path(), None).unwrap();
        assert!(!config.exists());
        std::fs::write(&config, GH).unwrap();
        set_socket(dir.path(), Some(Path::new(OURS))).unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains(&format!("http_unix_socket: '{OURS}'\naliases:\n    co: pr checkout\n")),
            "{text}"
        );
        assert!(text.starts_with("# What gh wrote\nversion: \"1\"\n"), "{text}");
        #[cfg(unix)]
        assert_eq!(arbiter_process::private::mode(&config), Some(0o600));
        set_socket(dir.path(), None).unwrap();
        assert!(!std::fs::read_to_string(&config).unwrap().contains(SOCKET_KEY));
        // Nothing but the file itself is left in the directory (no temp files).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A huge file is refused, untouched, naming the file.
        let huge = format!("editor: vim\n{}", "# padding\n".repeat(120_000));
        std::fs::write(&config, &huge).unwrap();
        let err = set_socket(dir.path(), Some(Path::new(OURS))).unwrap_err();
        assert!(
            err.message.contains("config.yml") && err.message.contains("bytes"),
            "{}",
            err.message
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), huge);
        // So is one whose top level is not a mapping.
        std::fs::write(&config, "{editor: vim}\n").unwrap();
        let err = set_socket(dir.path(), Some(Path::new(OURS))).unwrap_err();
        assert!(
            err.message.contains("config.yml") && err.message.contains("block mapping"),
            "{}",
            err.message
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "{editor: vim}\n");

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
