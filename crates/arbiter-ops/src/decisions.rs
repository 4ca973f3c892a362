//! Decisions: recorded in the `decisions` stream (`decide`), rendered as Markdown
//! (`render`), and the git-native drop-box (`inbox_drop`, `inbox_sweep`, `inbox_check`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arbiter_client::inbox;
pub use arbiter_client::inbox::{CheckReport, Sweep, SweepReport};
use arbiter_core::decisions::{Decision, KIND, STREAM, stream};
use arbiter_core::log::{ContentType, NewRecord, RecordFields};
use arbiter_core::name::Namespace;
use arbiter_core::{Error, ErrorKind, Result};
use arbiter_store::Store;
use serde::{Deserialize, Serialize};

/// Which input of a decision was wrong: each front end names its own flag or field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionInput {
    Text,
    Title,
    By,
}

/// A decision from what a caller gave, checked: a non-empty text, a title of one
/// non-empty line, an agent name for `by` (`inbox::validate_agent`).
pub fn decision(text: &str, title: Option<&str>, by: &str) -> std::result::Result<Decision, (DecisionInput, Error)> {
    inbox::validate_agent(by).map_err(|e| (DecisionInput::By, e))?;
    if text.trim().is_empty() {
        return Err((DecisionInput::Text, Error::bad_input("the decision text is empty")));
    }
    if title.is_some_and(|t| t.trim().is_empty() || t.contains('\n')) {
        return Err((
            DecisionInput::Title,
            Error::bad_input("the title must be one non-empty line"),
        ));
    }
    Ok(Decision::new(text, title))
}

/// The record of a decision in the `decisions` stream, checked: build it before opening
/// the store, so a decision that cannot be recorded writes nothing.
pub fn record(
    namespace: &Namespace,
    decision: &Decision,
    author: &str,
    tags: BTreeMap<String, String>,
    idempotency_key: Option<String>,
) -> Result<NewRecord> {
    NewRecord::new(
        namespace.clone(),
        stream(),
        RecordFields {
            kind: KIND.to_string(),
            author: author.to_string(),
            body: serde_json::to_string(decision).expect("a decision serializes"),
            content_type: ContentType::Json,
            tags,
            trace_id: None,
            idempotency_key,
        },
    )
}

/// A recorded decision; `id` is what the Markdown names it by.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub stream: std::borrow::Cow<'static, str>,
    pub offset: i64,
    pub duplicate: bool,
    pub id: String,
}

/// Appends a decision's record (from [`record`]).
pub async fn decide(store: &Store, record: NewRecord) -> Result<Decided> {
    let appended = store.log().append(record).await?;
    Ok(Decided {
        stream: STREAM.into(),
        offset: appended.offset,
        duplicate: appended.duplicate,
        id: format!("decision-{}", appended.offset),
    })
}

/// The decisions log as Markdown: the same log always gives the same bytes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub text: String,
    /// How many decisions it holds.
    pub decisions: usize,
}

/// Renders the whole decisions log of `namespace`.
pub async fn render(store: &Store, namespace: &Namespace) -> Result<Rendered> {
    let mut records = Vec::new();
    let mut from = 0;
    // Bounded by the stream's length.
    loop {
        let batch = store.log().read(namespace, &stream(), from, 1000).await?;
        let Some(last) = batch.last() else { break };
        from = last.offset + 1;
        records.extend(batch);
    }
    Ok(Rendered {
        text: arbiter_core::decisions::render(namespace, &records),
        decisions: records.len(),
    })
}

/// The canonical decisions file: `into`, else the one the Squad layout in the current
/// directory has (refused when there is none, or two).
pub fn canonical(into: Option<PathBuf>) -> Result<PathBuf> {
    match into {
        Some(into) => Ok(into),
        None => inbox::find_canonical(Path::new("")),
    }
}

/// Writes a decision as a new, uniquely named file in `inbox`; refused where a sweep
/// would refuse (no canonical file found).
pub fn inbox_drop(inbox: &Path, decision: &Decision, by: &str, tags: &[(String, String)]) -> Result<PathBuf> {
    canonical(None)?;
    inbox::drop_entry(inbox, decision, by, tags)
}

/// Checks and repairs the canonical file, then merges the inbox into it (under the
/// namespace's sweep lease).
pub async fn inbox_sweep(store: &Store, sweep: Sweep) -> Result<SweepReport> {
    inbox::sweep(store, sweep).await
}

/// What `inbox_check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// Every entry whole, matching its hash, once.
    pub clean: bool,
    pub files: Vec<CheckReport>,
}

impl Checked {
    /// The failure a front end reports after showing the findings: `Conflict` when a
    /// sweep has something to restore or drop, or finds something it cannot restore.
    pub fn problem(&self, into: &Path) -> Option<Error> {
        if self.clean {
            return None;
        }
        let cannot: usize = self.files.iter().map(|r| r.cannot_restore).sum();
        Some(Error::new(
            ErrorKind::Conflict,
            if cannot > 0 {
                format!(
                    "{}: {cannot} damaged part(s) a sweep cannot restore: fix them by hand",
                    into.display()
                )
            } else {
                format!("{}: a sweep has entries to restore or drop", into.display())
            },
        ))
    }
}

/// Checks the canonical file `into` (and its archive) as a sweep would, changing nothing.
pub fn inbox_check(inbox: &Path, into: &Path) -> Result<Checked> {
    let files = inbox::check(inbox, into)?;
    Ok(Checked {
        clean: files.iter().all(|r| r.findings.is_empty()),
        files,
    })
}
