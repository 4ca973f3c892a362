//! Noticing an edited `arbiter.toml`, and the one line that says what a reload changed.
//!
//! The file is read once a second and compared with the text last applied; a changed text
//! is validated as a whole. A broken edit is reported once (per distinct error) and the
//! configuration in force keeps running; `watch` applies a valid one.

use std::collections::BTreeSet;
use std::path::PathBuf;

use arbiter_config::Config;

/// Watches the configuration file for edits.
pub(crate) struct ConfigFile {
    path: PathBuf,
    /// The text last applied (or reported broken); `None`: unreadable.
    seen: Option<Vec<u8>>,
    /// Errors already reported, so a broken file is not reported every second.
    reported: BTreeSet<String>,
}

impl ConfigFile {
    /// Starts from the file as it is now: the configuration `watch` started with.
    pub(crate) fn new(path: PathBuf) -> ConfigFile {
        let seen = std::fs::read(&path).ok();
        ConfigFile {
            path,
            seen,
            reported: BTreeSet::new(),
        }
    }

    /// The edited configuration, if the file changed since the last call and is valid.
    /// A broken edit is reported on stderr (once) and gives `None`.
    pub(crate) fn edited(&mut self) -> Option<Config> {
        let now = std::fs::read(&self.path).ok();
        if now == self.seen {
            return None;
        }
        self.seen = now;
        match Config::from_file(&self.path) {
            Ok(config) => {
                self.reported.clear();
                Some(config)
            }
            Err(e) => {
                if self.reported.insert(e.message.clone()) {
                    tracing::debug!(error = %e, "the edited configuration is invalid");
                    eprintln!(
                        "arbiter: {}: the edited configuration is invalid; the old one keeps running",
                        e.message
                    );
                }
                None
            }
        }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// What a reload changed, for the one line that says so.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// `started`, `stopped` or `restarted`.
    pub dispatcher: Option<&'static str>,
    /// The GitHub proxy: `started`, `stopped` or `restarted`.
    pub github: Option<&'static str>,
}

impl Changes {
    /// `arbiter: reloaded PATH: loops +three -two ~one; dispatcher started`.
    pub(crate) fn line(&self, path: &std::path::Path) -> String {
        let mut parts = Vec::new();
        let loops: Vec<String> = [("+", &self.added), ("-", &self.removed), ("~", &self.changed)]
            .iter()
            .flat_map(|(sign, names)| names.iter().map(move |n| format!("{sign}{n}")))
            .collect();
        if !loops.is_empty() {
            parts.push(format!("loops {}", loops.join(" ")));
        }
        if let Some(what) = self.dispatcher {
            parts.push(format!("dispatcher {what}"));
        }
        if let Some(what) = self.github {
            parts.push(format!("GitHub proxy {what}"));
        }
        if parts.is_empty() {
            parts.push("no loop or channel changed".into());
        }
        format!("arbiter: reloaded {}: {}", path.display(), parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_changed() {
        let changes = Changes {
            added: vec!["three".into()],
            removed: vec!["two".into()],
            changed: vec!["one".into()],
            dispatcher: Some("started"),
            github: None,
        };
        assert_eq!(
            changes.line(std::path::Path::new("arbiter.toml")),
            "arbiter: reloaded arbiter.toml: loops +three -two ~one; dispatcher started"
        );
        let github = Changes {
            github: Some("stopped"),
            ..Changes::default()
        };
        assert_eq!(
            github.line(std::path::Path::new("a.toml")),
            "arbiter: reloaded a.toml: GitHub proxy stopped"
        );
        assert_eq!(
            Changes::default().line(std::path::Path::new("a.toml")),
            "arbiter: reloaded a.toml: no loop or channel changed"
        );
    }
}
