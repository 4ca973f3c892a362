//! Decisions as Markdown: the store-backed projection (`decisions render`) and the
//! git-native drop-box's merge and check (`inbox sweep`, `inbox check`). Pure text
//! functions, so the same input always gives byte-identical output.
//!
//! Every entry arbiter writes into a canonical decisions file is fenced by two HTML
//! comments, invisible when the Markdown is rendered:
//!
//! ```text
//! <!-- arbiter:entry id=ID len=BYTES sha256=HEX -->
//! …the entry's bytes, verbatim (a final newline added where missing)…
//! <!-- arbiter:end id=ID -->
//! ```
//!
//! The start marker says how long the entry is and what its SHA-256 is, so an entry is
//! checked, and its text skipped, without reading the text for markers: marker-like lines
//! inside an entry are text. The id comes from the inbox file's name, escaped
//! ([`escape_id`]: no white space, no `>`), and is unique in a file (`~2`, `~3`, … when taken).
//! An inbox file is merged once: an entry with its exact bytes under its id is its merge.
//!
//! [`repair`] checks a whole file: whole entries are kept; lines where markers do not make
//! whole entries (what `merge=union` of two branches interleaves) are rewritten as the exact
//! entries, found whole elsewhere in the file or in git; exact second copies are dropped;
//! what cannot be restored is reported and left as it is.
//!
//! Entries of the first format (`<!-- arbiter:entry id=ID -->`, no length or hash; written
//! before the check existed) are still read — from the start marker to the next marker,
//! which must be its end — and never rewritten; an inbox file is their merge when its text,
//! trimmed of final newlines as that format stored it, is the entry's.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::log::Record;

/// The stream `arbiter decide` appends to.
pub const STREAM: &str = "decisions";

/// [`STREAM`] as the store takes it.
pub fn stream() -> crate::name::StreamName {
    crate::name::StreamName::parse(STREAM).expect("the decisions stream name is valid")
}
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

/// One entry to merge: the id its file name gives, and the file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The id before any collision suffix: [`escape_id`] of the file name's stem.
    pub id: String,
    /// The file's text. The entry's bytes are exactly these, with a final newline added
    /// where one is missing ([`body`]).
    pub content: String,
    /// The id the first marker format gave the same file (white space replaced by `_`), so
    /// that an entry merged by an older arbiter is recognised.
    pub legacy_id: Option<String>,
}

impl Entry {
    /// The entry of an inbox file: its stem (the name without `.md`) and its text.
    pub fn from_file(stem: &str, content: String) -> Entry {
        Entry {
            id: escape_id(stem),
            content,
            legacy_id: Some(stem.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect()),
        }
    }

    /// The entry's bytes as they are written between its markers.
    pub fn body(&self) -> Cow<'_, str> {
        body(&self.content)
    }
}

/// A file's text as an entry's bytes: unchanged, with a final newline added where one is
/// missing (an empty text stays empty).
pub fn body(content: &str) -> Cow<'_, str> {
    if content.is_empty() || content.ends_with('\n') {
        Cow::Borrowed(content)
    } else {
        Cow::Owned(format!("{content}\n"))
    }
}

/// The id of a file name's stem: ASCII letters, digits, `.`, `_` and `-` as they are, every
/// other byte as `%XX`. Two names never share an id, and an id never holds white space,
/// `~` (collision suffixes) or anything that could end or forge a marker.
pub fn escape_id(stem: &str) -> String {
    let mut out = String::with_capacity(stem.len());
    for b in stem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SHA-256 of an entry's bytes, in lowercase hex.
pub fn digest(body: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What an entry's start marker says: its id, and the length and hash of its bytes, which
/// is all it takes to check the entry and to skip its text without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Marker {
    pub id: String,
    pub len: usize,
    pub sha256: String,
}

impl Marker {
    /// The marker of `body` under `id`.
    pub fn of(id: &str, body: &str) -> Marker {
        Marker {
            id: id.to_string(),
            len: body.len(),
            sha256: digest(body),
        }
    }

    /// Whether `body` is the text this marker describes.
    pub fn matches(&self, body: &str) -> bool {
        body.len() == self.len && digest(body) == self.sha256
    }
}

fn start_line(marker: &Marker) -> String {
    format!(
        "<!-- arbiter:entry id={} len={} sha256={} -->",
        marker.id, marker.len, marker.sha256
    )
}

fn end_line(id: &str) -> String {
    format!("<!-- arbiter:end id={id} -->")
}

/// `body` fenced by its markers under `id`.
pub fn block_with_id(id: &str, body: &str) -> String {
    format!("{}\n{body}{}\n", start_line(&Marker::of(id, body)), end_line(id))
}

/// An entry fenced by its markers, under its own id.
pub fn block(entry: &Entry) -> String {
    block_with_id(&entry.id, &entry.body())
}

/// What one line of a canonical file is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Start(Marker),
    /// A start marker of the first format: `<!-- arbiter:entry id=ID -->`, no length or hash.
    LegacyStart(String),
    End(String),
    Text,
}

fn classify(line: &str) -> Line {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(rest) = line
        .strip_prefix("<!-- arbiter:entry id=")
        .and_then(|r| r.strip_suffix(" -->"))
    {
        let words: Vec<&str> = rest.split(' ').collect();
        return match words[..] {
            [id, len, sha] if is_id(id) => {
                let len = len.strip_prefix("len=").and_then(|n| n.parse().ok());
                let sha = sha
                    .strip_prefix("sha256=")
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
                match (len, sha) {
                    (Some(len), Some(sha)) => Line::Start(Marker {
                        id: id.to_string(),
                        len,
                        sha256: sha.to_string(),
                    }),
                    _ => Line::Text,
                }
            }
            [id] if is_legacy_id(id) => Line::LegacyStart(id.to_string()),
            _ => Line::Text,
        };
    }
    match line
        .strip_prefix("<!-- arbiter:end id=")
        .and_then(|r| r.strip_suffix(" -->"))
    {
        Some(id) if is_legacy_id(id) => Line::End(id.to_string()),
        _ => Line::Text,
    }
}

fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'%' | b'~'))
}

fn is_legacy_id(id: &str) -> bool {
    !id.is_empty() && !id.contains(char::is_whitespace)
}

/// A fenced entry found whole in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    /// The start marker; `None` for an entry of the first format, which carries no length
    /// or hash and is read from its start marker to the next marker, its end.
    pub marker: Option<Marker>,
    /// The bytes of the whole block, start marker to end marker and its newline.
    pub range: Range<usize>,
    /// The entry's bytes, between the markers.
    pub body: Range<usize>,
    /// 1-based line numbers of the start and end markers.
    pub lines: (usize, usize),
}

/// What a part of a canonical file is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Range<usize>),
    Entry(Found),
    /// Marker lines that do not make whole entries, and everything between them: what a
    /// union merge interleaved, or an edit broke. `lines` are 1-based, inclusive.
    Damaged {
        range: Range<usize>,
        lines: (usize, usize),
    },
}

/// The lines of a text, as byte offsets.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1).filter(|&i| i < text.len()));
        if text.is_empty() {
            starts.clear();
        }
        Lines { text, starts }
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    fn span(&self, i: usize) -> Range<usize> {
        self.starts[i]..self.starts.get(i + 1).copied().unwrap_or(self.text.len())
    }

    fn get(&self, i: usize) -> &'a str {
        &self.text[self.span(i)]
    }

    fn kind(&self, i: usize) -> Line {
        classify(self.get(i))
    }

    /// The line starting at byte `at`, if one does.
    fn at(&self, at: usize) -> Option<usize> {
        self.starts.binary_search(&at).ok()
    }

    /// The entry whose start marker is line `i`, if it is whole: its bytes match the
    /// marker's length and hash and its end marker follows them. Returns the end line.
    fn verify(&self, i: usize, marker: &Marker) -> Option<usize> {
        let from = self.span(i).end;
        let to = from.checked_add(marker.len)?;
        let body = self.text.get(from..to)?;
        if !(body.is_empty() || body.ends_with('\n')) || !marker.matches(body) {
            return None;
        }
        let end = self.at(to)?;
        (self.kind(end) == Line::End(marker.id.clone())).then_some(end)
    }

    /// The last line of the damaged part that starts at line `i`: up to where every entry
    /// started in it has seen its end marker (a stray end marker is a part by itself).
    fn damaged_until(&self, i: usize) -> usize {
        let mut open = match self.kind(i) {
            Line::Start(m) => vec![m.id],
            Line::LegacyStart(id) => vec![id],
            _ => return i,
        };
        for j in i + 1..self.len() {
            match self.kind(j) {
                Line::Start(m) => open.push(m.id),
                Line::LegacyStart(id) => open.push(id),
                Line::End(id) => {
                    if let Some(k) = open.iter().position(|o| *o == id) {
                        open.remove(k);
                    }
                    if open.is_empty() {
                        return j;
                    }
                }
                Line::Text => {}
            }
        }
        self.len() - 1
    }
}

/// Splits a text into plain text, whole entries and damaged parts. The text of a whole
/// entry is skipped by its length, never read for markers.
fn scan(text: &str) -> Vec<Part> {
    let lines = Lines::new(text);
    let mut parts: Vec<Part> = Vec::new();
    let push_text = |parts: &mut Vec<Part>, span: Range<usize>| match parts.last_mut() {
        Some(Part::Text(r)) if r.end == span.start => r.end = span.end,
        _ => parts.push(Part::Text(span)),
    };
    let mut i = 0;
    while i < lines.len() {
        let whole = match lines.kind(i) {
            Line::Text => {
                push_text(&mut parts, lines.span(i));
                i += 1;
                continue;
            }
            Line::Start(marker) => lines
                .verify(i, &marker)
                .map(|end| (marker.id.clone(), Some(marker), end)),
            Line::LegacyStart(id) => (i + 1..lines.len())
                .find(|&j| lines.kind(j) != Line::Text)
                .filter(|&j| lines.kind(j) == Line::End(id.clone()))
                .map(|end| (id, None, end)),
            Line::End(_) => None,
        };
        match whole {
            Some((id, marker, end)) => {
                parts.push(Part::Entry(Found {
                    id,
                    marker,
                    range: lines.span(i).start..lines.span(end).end,
                    body: lines.span(i).end..lines.span(end).start,
                    lines: (i + 1, end + 1),
                }));
                i = end + 1;
            }
            None => {
                let last = lines.damaged_until(i);
                parts.push(Part::Damaged {
                    range: lines.span(i).start..lines.span(last).end,
                    lines: (i + 1, last + 1),
                });
                i = last + 1;
            }
        }
    }
    parts
}

/// The whole entries of a text, in order (second copies included).
pub fn entries(text: &str) -> Vec<Found> {
    scan(text)
        .into_iter()
        .filter_map(|part| match part {
            Part::Entry(found) => Some(found),
            _ => None,
        })
        .collect()
}

/// The start markers in the damaged parts of a text whose entries are not whole there:
/// what a [`repair`] needs to find elsewhere (in git).
pub fn wanted(text: &str) -> Vec<Marker> {
    let mut out: Vec<Marker> = Vec::new();
    for part in scan(text) {
        let Part::Damaged { range, .. } = part else { continue };
        let lines = Lines::new(&text[..range.end]);
        for i in lines.at(range.start).unwrap_or(0)..lines.len() {
            if let Line::Start(marker) = lines.kind(i)
                && lines.verify(i, &marker).is_none()
                && !out.contains(&marker)
            {
                out.push(marker);
            }
        }
    }
    out
}

/// What one damaged part could not be restored from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// 1-based, inclusive: the damaged part, left as it is.
    pub first_line: usize,
    pub last_line: usize,
    pub message: String,
}

/// An entry's id and the 1-based, inclusive lines of the part it was found in.
pub type IdAt = (String, (usize, usize));

/// The result of [`repair`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repaired {
    /// The text with every restorable damaged part restored and second copies dropped.
    pub text: String,
    /// Entries rewritten whole from their exact bytes, with the lines of the damaged part
    /// they were found in.
    pub restored: Vec<IdAt>,
    /// Exact second copies of whole entries that were dropped, with their lines.
    pub duplicates: Vec<IdAt>,
    /// Damaged parts that could not be restored: left untouched in `text`.
    pub problems: Vec<Problem>,
}

impl Repaired {
    /// Whether the text was whole, once: nothing restored, dropped or damaged.
    pub fn is_clean(&self) -> bool {
        self.restored.is_empty() && self.duplicates.is_empty() && self.problems.is_empty()
    }
}

/// Checks a whole canonical file: every entry whole, contiguous, matching its hash, once.
///
/// A damaged part (what a union merge interleaved) is rewritten as its entries' exact
/// blocks, in the order of their start markers, followed by any of its lines that are in
/// none of them; an entry's bytes come from the text itself when a copy of it is whole,
/// else from `known` (which [`wanted`] lists; its answers are checked against the marker).
/// A damaged part with a marker line that no restored entry explains is left untouched and
/// reported. Then exact second copies of whole entries are dropped, each with the blank line
/// that separated it. Nothing else is changed.
pub fn repair(text: &str, known: &dyn Fn(&Marker) -> Option<String>) -> Repaired {
    let mut out = Repaired::default();
    let mut restored = String::with_capacity(text.len());
    let whole: Vec<Found> = entries(text);
    for part in scan(text) {
        match part {
            Part::Text(range) => restored.push_str(&text[range]),
            Part::Entry(found) => restored.push_str(&text[found.range]),
            Part::Damaged { range, lines } => match restore(text, range.clone(), lines, &whole, known) {
                Ok((replacement, ids)) => {
                    restored.push_str(&replacement);
                    out.restored.extend(ids.into_iter().map(|id| (id, lines)));
                }
                Err(problem) => {
                    restored.push_str(&text[range]);
                    out.problems.push(problem);
                }
            },
        }
    }
    let (text, duplicates) = drop_second_copies(&restored);
    out.text = text;
    out.duplicates = duplicates;
    out
}

fn restore(
    text: &str,
    range: Range<usize>,
    (first, last): (usize, usize),
    whole: &[Found],
    known: &dyn Fn(&Marker) -> Option<String>,
) -> std::result::Result<(String, Vec<String>), Problem> {
    let region = &text[range.clone()];
    let lines = Lines::new(region);
    // The entries whose start markers are here, each once, from their exact bytes.
    let mut blocks: Vec<(Marker, String)> = Vec::new();
    for i in 0..lines.len() {
        let Line::Start(marker) = lines.kind(i) else { continue };
        if blocks.iter().any(|(m, _)| *m == marker) {
            continue;
        }
        let body = lines
            .verify(i, &marker)
            .map(|end| region[lines.span(i).end..lines.span(end).start].to_string())
            .or_else(|| {
                whole
                    .iter()
                    .find(|f| f.marker.as_ref() == Some(&marker))
                    .map(|f| text[f.body.clone()].to_string())
            })
            .or_else(|| known(&marker).filter(|b| marker.matches(b)));
        if let Some(body) = body {
            let block = block_with_id(&marker.id, &body);
            blocks.push((marker, block));
        }
    }
    // Every line here must be in one of those blocks, or be kept; a marker line must be.
    let key = |line: &str| -> String {
        if line.ends_with('\n') {
            line.to_string()
        } else {
            format!("{line}\n")
        }
    };
    let mut counts: HashMap<String, isize> = HashMap::new();
    for i in 0..lines.len() {
        *counts.entry(key(lines.get(i))).or_default() += 1;
    }
    for (_, block) in &blocks {
        for line in block.split_inclusive('\n') {
            *counts.entry(line.to_string()).or_default() -= 1;
        }
    }
    let mut kept = String::new();
    let mut unexplained = Vec::new();
    for i in 0..lines.len() {
        let count = counts.get_mut(&key(lines.get(i))).expect("counted");
        if *count > 0 {
            *count -= 1;
            match lines.kind(i) {
                Line::Text => kept.push_str(lines.get(i)),
                Line::Start(m) => unexplained.push(format!(
                    "line {}: the start of entry {} (its exact text is neither whole here nor in git)",
                    first + i,
                    m.id
                )),
                Line::LegacyStart(id) => unexplained.push(format!(
                    "line {}: the start of entry {id}, in the first marker format (no hash to restore it by)",
                    first + i
                )),
                Line::End(id) => unexplained.push(format!(
                    "line {}: an end marker of {id} that closes no entry",
                    first + i
                )),
            }
        }
    }
    if !unexplained.is_empty() {
        return Err(Problem {
            first_line: first,
            last_line: last,
            message: format!(
                "lines {first}-{last} are not whole entries and cannot be restored: {}",
                unexplained.join("; ")
            ),
        });
    }
    let mut out = String::with_capacity(region.len());
    for (n, (_, block)) in blocks.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(block);
    }
    out.push_str(&kept);
    Ok((out, blocks.into_iter().map(|(m, _)| m.id).collect()))
}

/// Drops exact second copies of whole entries (same id, same bytes), each with the blank
/// line arbiter put before it.
fn drop_second_copies(text: &str) -> (String, Vec<IdAt>) {
    let mut out = String::with_capacity(text.len());
    let mut seen: HashSet<&str> = HashSet::new();
    let mut dropped = Vec::new();
    for part in scan(text) {
        match part {
            Part::Text(range) | Part::Damaged { range, .. } => out.push_str(&text[range]),
            Part::Entry(found) => {
                if seen.insert(&text[found.range.clone()]) {
                    out.push_str(&text[found.range]);
                } else {
                    if out.ends_with("\n\n") {
                        out.pop();
                    }
                    dropped.push((found.id, found.lines));
                }
            }
        }
    }
    (out, dropped)
}

/// The entries of a text, to ask whether an inbox file is already in it.
pub struct Index {
    entries: Vec<(String, Option<Marker>, String)>,
}

impl Index {
    pub fn of(text: &str) -> Index {
        Index {
            entries: entries(text)
                .into_iter()
                .map(|f| (f.id, f.marker, text[f.body].to_string()))
                .collect(),
        }
    }

    /// Whether `entry`'s exact bytes are in the text under its id (or its id with a
    /// collision suffix); for the first format, under its legacy id as that format wrote it.
    pub fn contains(&self, entry: &Entry) -> bool {
        let body = entry.body();
        let sha = digest(&body);
        let legacy = format!("{}\n", entry.content.trim_end_matches(['\n', '\r']));
        self.entries.iter().any(|(id, marker, text)| match marker {
            Some(m) => m.sha256 == sha && m.len == body.len() && is_id_of(id, &entry.id),
            None => entry.legacy_id.as_deref() == Some(id.as_str()) && *text == legacy,
        })
    }

    fn has_id(&self, id: &str) -> bool {
        self.entries.iter().any(|(i, _, _)| i == id)
    }

    fn push(&mut self, id: String, body: &str) {
        self.entries
            .push((id.clone(), Some(Marker::of(&id, body)), body.to_string()));
    }
}

/// Whether `id` is `base`, or `base` with a collision suffix (`~2`, `~3`, …).
fn is_id_of(id: &str, base: &str) -> bool {
    id == base
        || id
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('~'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The result of [`merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub text: String,
    /// Ids appended by this merge, in order.
    pub added: Vec<String>,
}

/// Appends, in the order given, every entry whose exact bytes are not in the text yet
/// (see [`Index::contains`]), each under a unique id: its own, or with `~2`, `~3`, … when
/// another entry has it. A text with no entries yet gets [`HEADER`] first.
pub fn merge(canonical: &str, entries: &[Entry]) -> Merged {
    let mut index = Index::of(canonical);
    let mut text = canonical.to_string();
    if text.is_empty() {
        text.push_str(HEADER);
    }
    let mut added = Vec::new();
    for entry in entries {
        if index.contains(entry) {
            continue;
        }
        let id = (1..)
            .map(|n| {
                if n == 1 {
                    entry.id.clone()
                } else {
                    format!("{}~{n}", entry.id)
                }
            })
            .find(|id| !index.has_id(id))
            .expect("an unused suffix");
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if !text.ends_with("\n\n") {
            text.push('\n');
        }
        let body = entry.body();
        text.push_str(&block_with_id(&id, &body));
        index.push(id.clone(), &body);
        added.push(id);
    }
    Merged { text, added }
}

/// The header of an archive file arbiter creates.
pub const ARCHIVE_HEADER: &str = "# Decisions (archive)\n";

/// The result of [`archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub canonical: String,
    pub archive: String,
    /// Ids moved, oldest first.
    pub moved: Vec<String>,
}

/// Moves the oldest whole entries (the first in the file) from `canonical` to the end of
/// `archive` until `canonical` is at most `over` bytes or has no entry left. An entry
/// already in the archive (an interrupted earlier run) is not appended twice; every entry
/// is in exactly one of the two files afterwards.
pub fn archive(canonical: &str, archive: &str, over: usize) -> Archived {
    let mut canonical = canonical.to_string();
    let mut archive = archive.to_string();
    let mut moved = Vec::new();
    while canonical.len() > over {
        let Some(found) = entries(&canonical).into_iter().next() else {
            break;
        };
        let block = canonical[found.range.clone()].to_string();
        let present = entries(&archive).iter().any(|f| archive[f.range.clone()] == block);
        if !present {
            if archive.is_empty() {
                archive.push_str(ARCHIVE_HEADER);
            }
            if !archive.ends_with('\n') {
                archive.push('\n');
            }
            if !archive.ends_with("\n\n") {
                archive.push('\n');
            }
            archive.push_str(&block);
        }
        let mut start = found.range.start;
        if canonical[..start].ends_with("\n\n") {
            start -= 1;
        }
        canonical.replace_range(start..found.range.end, "");
        moved.push(found.id);
    }
    Archived {
        canonical,
        archive,
        moved,
    }
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
            legacy_id: None,
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
        Entry::from_file(id, content.into())
    }

    fn no_git(_: &Marker) -> Option<String> {
        None
    }

    #[test]
    fn merges_idempotently_and_byte_exact() {
        let canonical = "# Decisions\n\n> Team decisions.\n\n### 2026-03-26: Old\n**By:** X\n";
        let first = merge(canonical, &[entry("a-x", "## A\r\ntext\r\n\n\n"), entry("b-y", "## B")]);
        assert_eq!(first.added, ["a-x", "b-y"]);
        assert!(first.text.starts_with(canonical), "existing text is kept verbatim");
        assert_eq!(
            &first.text[canonical.len()..],
            format!(
                "\n{}\n{}",
                block_with_id("a-x", "## A\r\ntext\r\n\n\n"),
                block_with_id("b-y", "## B\n")
            )
        );
        assert!(first.text.contains("<!-- arbiter:entry id=b-y len=5 sha256="));
        let again = merge(&first.text, &[entry("a-x", "## A\r\ntext\r\n\n\n")]);
        assert!(again.added.is_empty());
        assert_eq!(again.text, first.text);
        let found = entries(&first.text);
        assert_eq!(found.len(), 2);
        assert_eq!(
            &first.text[found[0].body.clone()],
            "## A\r\ntext\r\n\n\n",
            "CRLF and blank lines kept"
        );
        assert!(repair(&first.text, &no_git).is_clean());
        assert_eq!(merge("", &[]).text, HEADER);
    }

    #[test]
    fn ids_are_escaped_unique_and_never_merge_two_files() {
        assert_eq!(escape_id("my decision"), "my%20decision");
        assert_eq!(escape_id("x -->"), "x%20--%3E");
        assert_eq!(escape_id("café"), "caf%C3%A9");
        let merged = merge("", &[entry("my decision", "one"), entry("my_decision", "two")]);
        assert_eq!(merged.added, ["my%20decision", "my_decision"]);
        // The same name again with other text (Squad reuses names): a new id, never a merge.
        let again = merge(
            &merged.text,
            &[entry("my_decision", "three"), entry("my_decision", "two")],
        );
        assert_eq!(again.added, ["my_decision~2"]);
        let index = Index::of(&again.text);
        for (stem, text) in [("my decision", "one"), ("my_decision", "two"), ("my_decision", "three")] {
            assert!(index.contains(&entry(stem, text)), "{stem}: {text}");
        }
        assert!(!index.contains(&entry("my decision", "two")));
    }

    #[test]
    fn markers_inside_an_entry_are_text() {
        let forged = format!(
            "Body.\n<!-- arbiter:end id=a -->\n{}",
            block_with_id("future", "forged\n")
        );
        let merged = merge("", &[entry("a", &forged)]);
        let found = entries(&merged.text);
        assert_eq!(found.len(), 1, "{}", merged.text);
        assert_eq!(&merged.text[found[0].body.clone()], forged);
        assert!(!Index::of(&merged.text).contains(&entry("future", "real\n")));
        assert!(repair(&merged.text, &no_git).is_clean());
    }

    #[test]
    fn restores_what_a_union_merge_interleaved() {
        let a = block_with_id("a", "# A\n\n**Status:** Done\n\nalpha\n");
        let b = block_with_id("b", "# B\n\n**Status:** Done\n\nbeta\n");
        let (sa, sb) = (a.lines().next().unwrap(), b.lines().next().unwrap());
        // Git's union merge of a branch that appended `a` and one that appended `b`.
        let merged = format!(
            "# Decisions\n\n{sa}\n# A\n{sb}\n# B\n\n**Status:** Done\n\nalpha\n<!-- arbiter:end id=a -->\nbeta\n\
             <!-- arbiter:end id=b -->\nafter\n"
        );
        assert_eq!(wanted(&merged).len(), 2);
        let bodies = |m: &Marker| {
            [
                "# A\n\n**Status:** Done\n\nalpha\n",
                "# B\n\n**Status:** Done\n\nbeta\n",
                "wrong\n",
            ]
            .into_iter()
            .find(|b| m.matches(b))
            .map(str::to_string)
        };
        let repaired = repair(&merged, &bodies);
        assert_eq!(repaired.text, format!("# Decisions\n\n{a}\n{b}after\n"));
        assert_eq!(repaired.restored.len(), 2);
        assert!(repaired.problems.is_empty());
        assert!(repair(&repaired.text, &no_git).is_clean());
        // Without the bytes: reported with line numbers, left as it is.
        let unknown = repair(&merged, &no_git);
        assert_eq!(unknown.text, merged);
        assert_eq!(unknown.problems.len(), 1);
        assert_eq!((unknown.problems[0].first_line, unknown.problems[0].last_line), (3, 13));
        assert!(
            unknown.problems[0].message.contains("line 3: the start of entry a"),
            "{:?}",
            unknown.problems
        );
    }

    #[test]
    fn drops_exact_second_copies_only() {
        let one = block(&entry("a", "A"));
        let two = block(&entry("b", "B"));
        let other = block(&entry("a", "A, edited")); // same id, other bytes: kept
        let text = format!("# Decisions\n\n{one}\n{two}\n{one}\n{other}");
        let repaired = repair(&text, &no_git);
        assert_eq!(repaired.duplicates.len(), 1);
        assert_eq!(repaired.text, format!("# Decisions\n\n{one}\n{two}\n{other}"));
        assert!(repair(&repaired.text, &no_git).is_clean());
        // A stray end marker is reported, not deleted.
        let stray = format!("{one}<!-- arbiter:end id=a -->\n");
        let repaired = repair(&stray, &no_git);
        assert_eq!(repaired.text, stray);
        assert_eq!(repaired.problems[0].first_line, 4);
    }

    #[test]
    fn reads_entries_of_the_first_format() {
        let text = "# Decisions\n\n<!-- arbiter:entry id=old_one -->\n## Old\n<!-- arbiter:end id=old_one -->\n";
        let found = entries(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].marker, None);
        assert!(
            Index::of(text).contains(&entry("old one", "## Old\n\n")),
            "merged by the old sweep"
        );
        assert!(!Index::of(text).contains(&entry("old one", "## New\n")));
        let merged = merge(text, &[entry("old one", "## Old\n"), entry("old_one", "## New")]);
        assert_eq!(merged.added, ["old_one~2"]);
        assert!(merged.text.starts_with(text));
        assert!(repair(&merged.text, &no_git).is_clean());
        let unclosed = "<!-- arbiter:entry id=a -->\nhalf\n";
        assert_eq!(repair(unclosed, &no_git).text, unclosed);
        assert_eq!(repair(unclosed, &no_git).problems.len(), 1);
    }

    #[test]
    fn archives_the_oldest_entries() {
        let merged = merge(HEADER, &[entry("a", "A"), entry("b", "B"), entry("c", "C")]).text;
        let over = merged.len() - 1;
        let first = archive(&merged, "", over);
        assert_eq!(first.moved, ["a"]);
        assert!(first.canonical.len() <= over);
        assert_eq!(first.archive, format!("{ARCHIVE_HEADER}\n{}", block(&entry("a", "A"))));
        // Interrupted after writing the archive: run again, still once in each.
        let again = archive(&merged, &first.archive, over);
        assert_eq!(again, first);
        assert_eq!(
            archive(&first.canonical, &first.archive, over).moved,
            Vec::<String>::new()
        );
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
            stream: stream(),
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
            format!(
                "# Decisions\n\n<!-- Rendered by `arbiter decisions render` from the \"decisions\" stream of namespace \
             \"default\". Edits here are overwritten: record decisions with `arbiter decide`. -->\n\n\
             {}\n{}",
                block_with_id(
                    "decision-0",
                    "### 2025-11-25: Use SQLite\n**By:** ada\n**Tags:** area=store\n\nEmbedded.\n"
                ),
                block_with_id(
                    "decision-1",
                    "### 2025-11-25: plain text record\n**By:** ada\n**Tags:** area=store\n"
                )
            )
        );
    }
}
