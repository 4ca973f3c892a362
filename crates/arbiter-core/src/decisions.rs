//! Decisions as Markdown: the store-backed projection (`decisions render`) and the
//! git-native drop-box's merge (`inbox sweep`). Pure text functions, so the same input
//! always gives byte-identical output.
//!
//! Every entry arbiter writes into a canonical decisions file is fenced by two HTML
//! comments, invisible when the Markdown is rendered:
//!
//! ```text
//! <!-- arbiter:entry id=ID -->
//! …the entry's Markdown, verbatim…
//! <!-- arbiter:end id=ID -->
//! ```
//!
//! The id is what makes merging idempotent: an entry whose id is already in the file is
//! never added again, and a second copy of an id (two branches that both merged it, joined
//! by git's union merge) is dropped on the next merge.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::log::Record;

/// The stream `arbiter decide` appends to.
pub const STREAM: &str = "decisions";
/// The record kind of a decision.
pub const KIND: &str = "decision";
/// The header of a canonical file arbiter creates.
pub const HEADER: &str = "# Decisions\n";

/// A decision's body, stored as JSON in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub title: String,
    pub text: String,
}

impl Decision {
    /// A decision from its text and an optional title; without one, the title is the
    /// text's first line and the text is what follows it.
    pub fn new(text: &str, title: Option<&str>) -> Decision {
        match title {
            Some(title) => Decision {
                title: title.trim().to_string(),
                text: text.trim_end().to_string(),
            },
            None => {
                let text = text.trim();
                let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
                Decision {
                    title: clean_title(first),
                    text: rest.trim().to_string(),
                }
            }
        }
    }

    /// The decision a record holds; a record that is not a decision's JSON is shown as
    /// text.
    pub fn from_record(record: &Record) -> Decision {
        serde_json::from_str(&record.body).unwrap_or_else(|_| Decision::new(&record.body, None))
    }
}

fn clean_title(line: &str) -> String {
    let title = line.trim().trim_start_matches('#').trim();
    let mut out: String = title.chars().take(120).collect();
    if out.len() < title.len() {
        out.push('…');
    }
    out
}

/// One entry to merge: its id and its Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub content: String,
}

fn begin_marker(id: &str) -> String {
    format!("<!-- arbiter:entry id={id} -->")
}

fn end_marker(id: &str) -> String {
    format!("<!-- arbiter:end id={id} -->")
}

/// An entry fenced by its markers, ending with a newline.
pub fn block(entry: &Entry) -> String {
    let content = entry.content.trim_end_matches(['\n', '\r']);
    format!("{}\n{content}\n{}\n", begin_marker(&entry.id), end_marker(&entry.id))
}

/// The result of [`merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub text: String,
    /// Ids appended by this merge, in order.
    pub added: Vec<String>,
    /// Second copies of ids that were dropped.
    pub duplicates_removed: usize,
}

/// Merges `entries` into a canonical file's text: drops repeated copies of an id, then
/// appends, in the order given, every entry whose id is not in the file yet.
pub fn merge(canonical: &str, entries: &[Entry]) -> Merged {
    let (mut text, mut present, duplicates_removed) = dedupe(canonical);
    if text.is_empty() {
        text.push_str(HEADER);
    }
    let mut added = Vec::new();
    for entry in entries {
        if present.insert(entry.id.clone()) {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            if !text.ends_with("\n\n") {
                text.push('\n');
            }
            text.push_str(&block(entry));
            added.push(entry.id.clone());
        }
    }
    Merged {
        text,
        added,
        duplicates_removed,
    }
}

/// The ids of the fenced entries in a text.
pub fn entry_ids(text: &str) -> BTreeSet<String> {
    dedupe(text).1
}

/// Removes second copies of fenced entries; returns the text, the ids and the count
/// removed. An entry whose end marker is missing is kept as it is.
fn dedupe(text: &str) -> (String, BTreeSet<String>, usize) {
    let mut out = String::with_capacity(text.len());
    let mut seen = BTreeSet::new();
    let mut removed = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let Some(id) = parse_begin(line) else {
            out.push_str(line);
            continue;
        };
        let mut entry = String::from(line);
        let end = end_marker(&id);
        let mut closed = false;
        for next in lines.by_ref() {
            entry.push_str(next);
            if next.trim_end() == end {
                closed = true;
                break;
            }
        }
        if !closed || seen.insert(id) {
            out.push_str(&entry);
        } else {
            removed += 1;
            // Drop the blank line that separated the copy from what follows.
            if lines.peek().is_some_and(|l| l.trim().is_empty()) && out.ends_with("\n\n") {
                lines.next();
            }
        }
    }
    (out, seen, removed)
}

fn parse_begin(line: &str) -> Option<String> {
    let id = line
        .trim_end()
        .strip_prefix("<!-- arbiter:entry id=")?
        .strip_suffix(" -->")?;
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

/// The Markdown of one decision, as `inbox drop` writes it and `decisions render` shows
/// it (Squad's style).
pub fn entry_markdown(date: &str, decision: &Decision, author: &str, tags: &[(String, String)]) -> String {
    let mut out = format!("### {date}: {}\n**By:** {author}\n", decision.title);
    if !tags.is_empty() {
        let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("**Tags:** {}\n", tags.join(", ")));
    }
    if !decision.text.is_empty() {
        out.push('\n');
        out.push_str(&decision.text);
        out.push('\n');
    }
    out
}

/// The `decisions.md` projection of the decision records of one namespace, in offset order.
/// The same records give byte-identical output.
pub fn render(namespace: &str, records: &[Record]) -> String {
    let mut out = format!(
        "{HEADER}\n<!-- Rendered by `arbiter decisions render` from the {STREAM:?} stream of namespace \
         {namespace:?}. Edits here are overwritten: record decisions with `arbiter decide`. -->\n"
    );
    for record in records {
        let decision = Decision::from_record(record);
        let tags: Vec<(String, String)> = record.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let entry = Entry {
            id: format!("decision-{}", record.offset),
            content: entry_markdown(&date(record.created_at), &decision, &record.author, &tags),
        };
        out.push('\n');
        out.push_str(&block(&entry));
    }
    out
}

/// `YYYY-MM-DD` (UTC) of a time in milliseconds since the Unix epoch.
pub fn date(ms: Millis) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A file-name slug: lowercase letters, digits and dashes, at most 40 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "entry".to_string() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, content: &str) -> Entry {
        Entry {
            id: id.into(),
            content: content.into(),
        }
    }

    #[test]
    fn merges_idempotently() {
        let canonical = "# Decisions\n\n> Team decisions.\n\n### 2026-03-26: Old\n**By:** X\n";
        let first = merge(canonical, &[entry("a-x", "## A\ntext\n"), entry("b-y", "## B")]);
        assert_eq!(first.added, ["a-x", "b-y"]);
        assert!(first.text.starts_with(canonical), "existing text is kept verbatim");
        assert_eq!(
            &first.text[canonical.len()..],
            "\n<!-- arbiter:entry id=a-x -->\n## A\ntext\n<!-- arbiter:end id=a-x -->\n\n\
             <!-- arbiter:entry id=b-y -->\n## B\n<!-- arbiter:end id=b-y -->\n"
        );
        let again = merge(&first.text, &[entry("a-x", "## A\ntext\n")]);
        assert!(again.added.is_empty());
        assert_eq!(again.text, first.text);
        assert_eq!(entry_ids(&first.text).into_iter().collect::<Vec<_>>(), ["a-x", "b-y"]);
    }

    #[test]
    fn drops_second_copies() {
        let one = block(&entry("a", "A"));
        let two = block(&entry("b", "B"));
        // What a union merge of two branches that both merged `a` can look like.
        let text = format!("# Decisions\n\n{one}\n{two}\n{one}");
        let merged = merge(&text, &[]);
        assert_eq!(merged.duplicates_removed, 1);
        assert_eq!(merged.text, format!("# Decisions\n\n{one}\n{two}\n"));
        assert_eq!(merge(&merged.text, &[]).text, merged.text);
    }

    #[test]
    fn creates_a_header_for_a_new_file() {
        let merged = merge("", &[entry("a", "A\n")]);
        assert_eq!(
            merged.text,
            "# Decisions\n\n<!-- arbiter:entry id=a -->\nA\n<!-- arbiter:end id=a -->\n"
        );
    }

    #[test]
    fn unclosed_entries_are_kept() {
        let text = "<!-- arbiter:entry id=a -->\nhalf\n";
        assert_eq!(merge(text, &[]).text, text);
    }

    #[test]
    fn decisions_and_titles() {
        assert_eq!(
            Decision::new("## Use SQLite\n\nBecause it is embedded.\n", None),
            Decision {
                title: "Use SQLite".into(),
                text: "Because it is embedded.".into()
            }
        );
        assert_eq!(
            Decision::new("one line", None),
            Decision {
                title: "one line".into(),
                text: String::new()
            }
        );
        assert_eq!(
            Decision::new("body\n", Some(" T ")),
            Decision {
                title: "T".into(),
                text: "body".into()
            }
        );
    }

    #[test]
    fn dates_and_slugs() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_764_109_800_000), "2025-11-25");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(slug("Use SQLite — by default!"), "use-sqlite-by-default");
        assert_eq!(slug("???"), "entry");
        assert!(slug(&"x".repeat(100)).len() <= 40);
    }

    #[test]
    fn renders_deterministically() {
        let record = |offset: i64, body: &str| Record {
            stream: STREAM.into(),
            offset,
            kind: KIND.into(),
            author: "ada".into(),
            created_at: 1_764_109_800_000,
            body: body.into(),
            content_type: crate::log::ContentType::Json,
            tags: [("area".to_string(), "store".to_string())].into(),
            trace_id: None,
            idempotency_key: None,
        };
        let records = [
            record(0, r#"{"title":"Use SQLite","text":"Embedded."}"#),
            record(1, "plain text record"),
        ];
        let out = render("default", &records);
        assert_eq!(out, render("default", &records));
        assert_eq!(
            out,
            "# Decisions\n\n<!-- Rendered by `arbiter decisions render` from the \"decisions\" stream of namespace \
             \"default\". Edits here are overwritten: record decisions with `arbiter decide`. -->\n\n\
             <!-- arbiter:entry id=decision-0 -->\n### 2025-11-25: Use SQLite\n**By:** ada\n**Tags:** area=store\n\n\
             Embedded.\n<!-- arbiter:end id=decision-0 -->\n\n\
             <!-- arbiter:entry id=decision-1 -->\n### 2025-11-25: plain text record\n**By:** ada\n\
             **Tags:** area=store\n<!-- arbiter:end id=decision-1 -->\n"
        );
    }
}
