//! The one table: workload | system | ops/s | p50 | p99 | ratios | notes, as aligned text
//! for the terminal and as Markdown for `BENCHMARKS.md`.

use std::time::Duration;

use crate::stats::Measurement;

/// Which arbiter row a row is compared with: both ratio columns divide that arbiter row's
/// ops/s by this row's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The arbiter-on-SQLite (sync=full, the default) row of its workload.
    ArbiterSqlite,
    /// The arbiter-on-PostgreSQL row of its workload.
    ArbiterPostgres,
    /// Anything else (another arbiter setting, or a peer).
    Other,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Measured(Measurement),
    /// Not measured, and why: skipped, unavailable, failed, not built yet.
    Empty(String),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    pub system: String,
    pub role: Role,
    pub outcome: Outcome,
    pub note: String,
}

impl Row {
    fn ops_per_sec(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Measured(m) if m.ops > 0 => Some(m.ops_per_sec()),
            _ => None,
        }
    }
}

pub const HEADERS: [&str; 8] = ["workload", "system", "ops/s", "p50", "p99", "sqlite÷", "pg÷", "notes"];

/// What the ratio columns mean, printed under the table.
pub const LEGEND: &str = "sqlite÷ / pg÷: ops/s of arbiter on SQLite (sync=full, the default) / on PostgreSQL \
in the same workload, divided by this row's ops/s — above 1× arbiter is faster, below 1× the peer is; \
in the `over HTTP` workloads, of arbiter's server (HTTP) on each store. \
p50/p99: latency of one operation (a lease try + release when granted; a CAS increment including its retries; \
an append until acknowledged; \
one rate-limiter decision; one work item pushed; one claim + done pair; one CLI process from start to exit).";

/// The cells of every row, ratios computed within each workload.
fn cells(rows: &[Row]) -> Vec<[String; 8]> {
    let reference = |workload: &str, role: Role| {
        rows.iter()
            .find(|r| r.workload == workload && r.role == role)
            .and_then(Row::ops_per_sec)
    };
    let mut out = Vec::new();
    let mut previous_workload = None;
    for row in rows {
        let workload = if previous_workload == Some(&row.workload) {
            String::new()
        } else {
            row.workload.clone()
        };
        previous_workload = Some(&row.workload);
        let ratio = |role| match (reference(&row.workload, role), row.ops_per_sec()) {
            (Some(arbiter), Some(this)) if this > 0.0 => format_ratio(arbiter / this),
            _ => "—".to_string(),
        };
        let cells = match &row.outcome {
            Outcome::Measured(m) => [
                workload,
                row.system.clone(),
                format_rate(m.ops_per_sec()),
                format_latency(m.percentile(50.0)),
                format_latency(m.percentile(99.0)),
                ratio(Role::ArbiterSqlite),
                ratio(Role::ArbiterPostgres),
                row.note.clone(),
            ],
            Outcome::Empty(why) => {
                let note = if row.note.is_empty() {
                    why.clone()
                } else {
                    format!("{why}; {}", row.note)
                };
                [
                    workload,
                    row.system.clone(),
                    "n/a".into(),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                    note,
                ]
            }
        };
        out.push(cells);
    }
    out
}

/// The table as aligned text (numbers right-aligned).
pub fn text(rows: &[Row]) -> String {
    let cells = cells(rows);
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let numeric = (2..=6).contains(&i);
            if i > 0 {
                text.push_str("  ");
            }
            if numeric {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else if i + 1 == row.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        text.trim_end().to_string()
    };
    let header: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    out.push_str(&line(&rule));
    out.push('\n');
    let mut previous_empty = true;
    for row in &cells {
        // A blank line between workloads.
        if !row[0].is_empty() && !previous_empty {
            out.push('\n');
        }
        previous_empty = false;
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// The table as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let escape = |cell: &str| cell.replace('|', "\\|");
    let mut out = format!("| {} |\n", HEADERS.join(" | "));
    out.push_str("|---|---|--:|--:|--:|--:|--:|---|\n");
    for row in cells(rows) {
        let row: Vec<String> = row.iter().map(|c| escape(c)).collect();
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// `12,345` for big rates, `12.3` for small ones.
pub fn format_rate(rate: f64) -> String {
    if rate >= 100.0 {
        thousands(rate.round() as u64)
    } else {
        format!("{rate:.1}")
    }
}

/// Milliseconds with three significant digits: `0.123 ms`, `1.23 ms`, `12.3 ms`, `1,234 ms`.
pub fn format_latency(latency: Duration) -> String {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", thousands(ms.round() as u64))
    }
}

/// `0.05×`, `3.4×`, `12×`.
pub fn format_ratio(ratio: f64) -> String {
    if ratio < 1.0 {
        format!("{ratio:.2}×")
    } else if ratio < 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{}×", thousands(ratio.round() as u64))
    }
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(ops: u64, secs: u64) -> Outcome {
        Outcome::Measured(Measurement {
            ops,
            ok: ops,
            attempts: ops,
            elapsed: Duration::from_secs(secs),
            sorted_us: vec![100; ops as usize],
            ..Measurement::default()
        })
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(format_rate(12345.4), "12,345");
        assert_eq!(format_rate(12.34), "12.3");
        assert_eq!(format_latency(Duration::from_micros(123)), "0.123 ms");
        assert_eq!(format_latency(Duration::from_micros(4560)), "4.56 ms");
        assert_eq!(format_latency(Duration::from_micros(1_234_000)), "1,234 ms");
        assert_eq!(format_ratio(0.0512), "0.05×");
        assert_eq!(format_ratio(3.44), "3.4×");
        assert_eq!(format_ratio(123.0), "123×");
    }

    #[test]
    fn ratios_compare_with_the_arbiter_rows_of_the_same_workload() {
        let rows = vec![
            Row {
                workload: "w".into(),
                system: "arbiter sqlite".into(),
                role: Role::ArbiterSqlite,
                outcome: measured(100, 1),
                note: String::new(),
            },
            Row {
                workload: "w".into(),
                system: "peer".into(),
                role: Role::Other,
                outcome: measured(400, 1),
                note: "n".into(),
            },
            Row {
                workload: "x".into(),
                system: "later".into(),
                role: Role::Other,
                outcome: Outcome::Empty("n/a — not built yet".into()),
                note: String::new(),
            },
        ];
        let cells = cells(&rows);
        assert_eq!(cells[0][5], "1.0×");
        assert_eq!(cells[1][0], "", "the workload is named once");
        assert_eq!(cells[1][5], "0.25×");
        assert_eq!(cells[1][6], "—", "no arbiter-on-PostgreSQL row");
        assert_eq!(cells[2][2], "n/a");
        assert_eq!(cells[2][7], "n/a — not built yet");
        let md = markdown(&rows);
        assert!(
            md.contains("| w | arbiter sqlite | 100 | 0.100 ms | 0.100 ms | 1.0× | — |  |"),
            "{md}"
        );
        let text = text(&rows);
        assert_eq!(text.lines().count(), 2 + 3 + 1, "{text}");
    }
}
