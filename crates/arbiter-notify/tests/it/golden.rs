//! Each channel's payload, pinned by golden files (`tests/golden/*.json`; rewrite them with
//! `UPDATE_GOLDEN=1 cargo test -p arbiter-notify`) and checked against the shape each
//! platform documents:
//! - Teams: a `message` with one Adaptive Card attachment
//!   (<https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/cards/cards-reference#adaptive-card>,
//!   <https://adaptivecards.io/explorer/>), under the 28 KB a Teams webhook takes.
//! - Slack: incoming webhook with Block Kit (<https://api.slack.com/reference/block-kit/blocks>):
//!   `text` fallback, at most 50 blocks, header `plain_text` ≤ 150 characters, section text
//!   ≤ 3000, context ≤ 10 elements.
//! - Discord: execute-webhook with embeds (<https://discord.com/developers/docs/resources/message#embed-object-embed-limits>):
//!   ≤ 10 embeds, title ≤ 256, description ≤ 4096, ≤ 25 fields (name ≤ 256, value ≤ 1024),
//!   footer ≤ 2048, all of an embed's text ≤ 6000, colour an integer ≤ 0xFFFFFF.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arbiter_core::notify::{Fold, Message, MessageType, Notification, Severity};
use arbiter_notify::format;
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
/// When the folded condition began: 3h25m before T0.
const FIRST_AT: i64 = T0 - (3 * 3600 + 25 * 60) * 1000;

fn notification(severity: Severity) -> Notification {
    Notification {
        kind: "loop.failure".into(),
        severity,
        source: "watch/web-deploy".into(),
        title: "web-deploy failed: tests red on main".into(),
        body: "`cargo test` failed in **crates/web**:\n\n- 3 tests failed\n- see the run log".into(),
        tags: BTreeMap::from([("loop".into(), "web-deploy".into()), ("repo".into(), "acme/web".into())]),
        dedupe_key: Some("web-deploy/tests".into()),
    }
}

fn message(message_type: MessageType, notification: Notification, fold: Option<Fold>) -> Message {
    Message {
        id: "fleet-42".into(),
        message_type,
        notification,
        fold,
        resolved_at: None,
        items: Vec::new(),
        created_at: T0,
    }
}

fn fold(count: u64) -> Option<Fold> {
    Some(Fold {
        dedupe_key: "web-deploy/tests".into(),
        count,
        first_at: FIRST_AT,
    })
}

/// The variants every golden file holds, by name.
fn variants() -> Vec<(&'static str, Message)> {
    let alert = message(MessageType::Alert, notification(Severity::Warning), fold(1));
    let folded = message(MessageType::Alert, notification(Severity::Critical), fold(30));
    let mut recovery = message(MessageType::Recovery, notification(Severity::Critical), fold(37));
    recovery.resolved_at = Some(T0);
    recovery.notification.body = "tests green again".into();
    let info = message(
        MessageType::Alert,
        Notification {
            kind: "news".into(),
            severity: Severity::Info,
            source: String::new(),
            title: "weekly dependency report is ready".into(),
            body: String::new(),
            tags: BTreeMap::new(),
            dedupe_key: None,
        },
        None,
    );
    let mut digest = message(MessageType::Digest, notification(Severity::Info), None);
    digest.id = "fleet-digest-log-1767225600000".into();
    digest.notification.title = "2 notification(s)".into();
    digest.notification.body = String::new();
    digest.items = vec![
        info.notification.clone(),
        Notification {
            severity: Severity::Warning,
            ..notification(Severity::Warning)
        },
    ];
    vec![
        ("alert", alert),
        ("folded", folded),
        ("recovery", recovery),
        ("info", info),
        ("digest", digest),
        ("mentions", mentions()),
    ]
}

/// A notification written to ping everyone on every platform, and to drive a terminal.
fn mentions() -> Message {
    message(
        MessageType::Alert,
        Notification {
            kind: "security.finding".into(),
            severity: Severity::Critical,
            source: "<!here>".into(),
            title: "<!everyone> @everyone @here <at>General</at> <@&123> \u{1b}[31mred".into(),
            body: "<!channel> <@U123> @everyone <AT>All</AT> <https://evil.example|click> \u{1b}]0;title\u{7}".into(),
            tags: BTreeMap::from([("who".into(), "<!subteam^S1> <at>Team</at>".into())]),
            dedupe_key: None,
        },
        None,
    )
}

/// A message at every limit: a 300-character title, a 64 KiB body, long tags, a 255
/// character dedupe key, a 200 character source, a 100 character kind.
fn long_message() -> Message {
    // 99 characters: ten dotted words.
    let kind = ["abcdefghi"; 10].join(".");
    let notification = Notification {
        kind,
        severity: Severity::Critical,
        source: "s".repeat(200),
        title: "T".repeat(arbiter_core::notify::MAX_TITLE_LEN),
        body: "body line with *markdown*\n".repeat(arbiter_core::notify::MAX_BODY_LEN / 26),
        tags: (0..60).map(|i| (format!("tag{i:02}"), "v".repeat(40))).collect(),
        dedupe_key: Some("k".repeat(255)),
    };
    notification
        .validate()
        .expect("the long message is a valid notification");
    let mut message = message(MessageType::Alert, notification, fold(1_000_000));
    message.id = format!("{}-{}", "n".repeat(63), i64::MAX);
    message
}

fn golden_path(platform: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{platform}.json"))
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(platform: &str, actual: &Value) {
    let path = golden_path(platform);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, pretty).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    if &expected != actual {
        panic!(
            "the {platform} payloads differ from {} (if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff)\n--- expected\n{text}\n--- actual\n{pretty}",
            path.display()
        );
    }
}

fn all(f: fn(&Message) -> Value) -> Value {
    Value::Object(
        variants()
            .into_iter()
            .map(|(name, m)| (name.to_string(), f(&m)))
            .collect(),
    )
}

fn chars(value: &Value) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

#[track_caller]
fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    match value.as_str() {
        Some(text) if !text.is_empty() => text,
        _ => panic!("{what}: expected a non-empty string, got {value}"),
    }
}

/// The documented shape of a Teams message with an Adaptive Card.
fn check_teams(payload: &Value) {
    let all = payload.to_string().to_lowercase();
    assert!(!all.contains("<at") && !all.contains("</at"), "no <at> mention: {all}");
    assert!(!all.contains("entities"), "no mention entities: {all}");
    let size = payload.to_string().len();
    assert!(
        size <= 28 * 1024,
        "a Teams webhook takes at most 28 KB; the payload is {size} bytes"
    );
    assert_eq!(payload["type"], "message");
    let attachments = payload["attachments"].as_array().expect("attachments is an array");
    assert_eq!(attachments.len(), 1, "one card");
    let attachment = &attachments[0];
    assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    let version = text(&card["version"], "content.version");
    let (major, minor) = version.split_once('.').expect("version is MAJOR.MINOR");
    assert!(
        major == "1" && minor.parse::<u32>().is_ok_and(|m| m <= 5),
        "Teams renders Adaptive Cards up to 1.5, got {version}"
    );
    assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    let body = card["body"].as_array().expect("content.body is an array");
    assert!(!body.is_empty(), "a card with a body");
    for (i, element) in body.iter().enumerate() {
        let what = format!("body[{i}]");
        match element["type"].as_str() {
            Some("TextBlock") => {
                text(&element["text"], &format!("{what}.text"));
                let optional = |key: &str, allowed: &[&str]| {
                    if let Some(v) = element.get(key) {
                        assert!(
                            allowed.contains(&v.as_str().unwrap_or("?")),
                            "{what}.{key}: {v} is not one of {allowed:?}"
                        );
                    }
                };
                optional(
                    "color",
                    &["Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"],
                );
                optional("weight", &["Default", "Lighter", "Bolder"]);
                optional("size", &["Default", "Small", "Medium", "Large", "ExtraLarge"]);
                if let Some(wrap) = element.get("wrap") {
                    assert!(wrap.is_boolean(), "{what}.wrap is a boolean");
                }
            }
            Some("FactSet") => {
                let facts = element["facts"].as_array().expect("FactSet.facts is an array");
                assert!(!facts.is_empty(), "{what}: a FactSet needs facts");
                for (j, fact) in facts.iter().enumerate() {
                    text(&fact["title"], &format!("{what}.facts[{j}].title"));
                    text(&fact["value"], &format!("{what}.facts[{j}].value"));
                }
            }
            other => panic!("{what}: unexpected element type {other:?}"),
        }
    }
}

/// The documented shape of a Slack incoming-webhook message with Block Kit.
fn check_slack(payload: &Value) {
    text(&payload["text"], "text");
    // Slack parses `<…>` (mentions, links) in `text` — what push notifications show — and
    // in mrkdwn; a header is plain_text, never parsed.
    let mut parsed = vec![payload["text"].to_string()];
    for block in payload["blocks"].as_array().into_iter().flatten() {
        for element in std::iter::once(&block["text"]).chain(block["elements"].as_array().into_iter().flatten()) {
            if element["type"] == "mrkdwn" {
                parsed.push(element["text"].to_string());
            }
        }
    }
    for text in parsed {
        assert!(!text.contains('<') && !text.contains('>'), "Slack would parse {text}");
    }
    assert!(chars(&payload["text"]) <= 40_000, "text is at most 40000 characters");
    let blocks = payload["blocks"].as_array().expect("blocks is an array");
    assert!(
        !blocks.is_empty() && blocks.len() <= 50,
        "1 to 50 blocks, got {}",
        blocks.len()
    );
    assert_eq!(blocks[0]["type"], "header", "the first block is the header");
    for (i, block) in blocks.iter().enumerate() {
        let what = format!("blocks[{i}]");
        match block["type"].as_str() {
            Some("header") => {
                assert_eq!(
                    block["text"]["type"], "plain_text",
                    "{what}: a header's text is plain_text"
                );
                let n = chars(&block["text"]["text"]);
                assert!(
                    (1..=150).contains(&n),
                    "{what}: header text is 1-150 characters, got {n}"
                );
            }
            Some("section") => {
                assert!(
                    matches!(block["text"]["type"].as_str(), Some("mrkdwn" | "plain_text")),
                    "{what}: a section's text is a text object"
                );
                let n = chars(&block["text"]["text"]);
                assert!(
                    (1..=3000).contains(&n),
                    "{what}: section text is 1-3000 characters, got {n}"
                );
            }
            Some("context") => {
                let elements = block["elements"].as_array().expect("context elements is an array");
                assert!((1..=10).contains(&elements.len()), "{what}: 1-10 context elements");
                for element in elements {
                    assert!(matches!(
                        element["type"].as_str(),
                        Some("mrkdwn" | "plain_text" | "image")
                    ));
                    if element["type"] != "image" {
                        let n = chars(&element["text"]);
                        assert!(
                            (1..=3000).contains(&n),
                            "{what}: context text is 1-3000 characters, got {n}"
                        );
                    }
                }
            }
            other => panic!("{what}: unexpected block type {other:?}"),
        }
    }
}

/// The documented shape and limits of a Discord webhook message with embeds.
fn check_discord(payload: &Value) {
    assert_eq!(
        payload["allowed_mentions"],
        json!({ "parse": [] }),
        "no text may ping anyone"
    );
    let embeds = payload["embeds"].as_array().expect("embeds is an array");
    assert!((1..=10).contains(&embeds.len()), "1-10 embeds");
    if let Some(username) = payload.get("username") {
        assert!((1..=80).contains(&chars(username)), "username is 1-80 characters");
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let what = format!("embeds[{i}]");
        let title = chars(&embed["title"]);
        assert!(
            (1..=256).contains(&title),
            "{what}.title is 1-256 characters, got {title}"
        );
        total += title;
        if let Some(description) = embed.get("description") {
            let n = chars(description);
            assert!(n <= 4096, "{what}.description is at most 4096 characters, got {n}");
            total += n;
        }
        let color = embed["color"].as_u64().expect("color is an integer");
        assert!(color <= 0xFF_FFFF, "{what}.color {color:#x} is at most 0xFFFFFF");
        let fields = embed["fields"].as_array().expect("fields is an array");
        assert!(fields.len() <= 25, "{what}: at most 25 fields");
        for (j, field) in fields.iter().enumerate() {
            let name = chars(&field["name"]);
            let value = chars(&field["value"]);
            assert!(
                (1..=256).contains(&name),
                "{what}.fields[{j}].name is 1-256 characters, got {name}"
            );
            assert!(
                (1..=1024).contains(&value),
                "{what}.fields[{j}].value is 1-1024 characters, got {value}"
            );
            if let Some(inline) = field.get("inline") {
                assert!(inline.is_boolean());
            }
            total += name + value;
        }
        if let Some(footer) = embed.get("footer") {
            let n = chars(&footer["text"]);
            assert!(n <= 2048, "{what}.footer.text is at most 2048 characters");
            total += n;
        }
        if let Some(timestamp) = embed.get("timestamp") {
            let ts = text(timestamp, "timestamp");
            humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("{what}.timestamp {ts:?} is not ISO 8601: {e}"));
        }
    }
    assert!(total <= 6000, "all embed text is at most 6000 characters, got {total}");
}

/// The generic webhook: the message itself, with stable field names.
fn check_webhook(payload: &Value, message: &Message) {
    text(&payload["id"], "id");
    assert_eq!(payload["id"], message.id.as_str());
    text(&payload["type"], "type");
    text(&payload["notification"]["kind"], "notification.kind");
    text(&payload["notification"]["severity"], "notification.severity");
    text(&payload["notification"]["title"], "notification.title");
    assert!(payload["created_at"].is_i64());
    let back: Message = serde_json::from_value(payload.clone()).expect("the webhook body reads back as a message");
    assert_eq!(&back, message, "the webhook body is the whole message, losslessly");
}

#[test]
fn teams_payloads_match_the_golden_file_and_the_adaptive_card_shape() {
    let payloads = all(format::teams);
    check_golden("teams", &payloads);
    for (name, payload) in payloads.as_object().unwrap() {
        eprintln!("teams {name}");
        check_teams(payload);
    }
    check_teams(&format::teams(&long_message()));
    // Characters JSON escapes take more room than they count: still under the limit.
    let mut escaped = long_message();
    escaped.notification.body = "\"\u{1}".repeat(30_000);
    escaped.notification.tags = (0..60).map(|i| (format!("t{i:02}"), "\\\n".repeat(200))).collect();
    check_teams(&format::teams(&escaped));
}

#[test]
fn slack_payloads_match_the_golden_file_and_the_block_kit_shape() {
    let payloads = all(format::slack);
    check_golden("slack", &payloads);
    for (name, payload) in payloads.as_object().unwrap() {
        eprintln!("slack {name}");
        check_slack(payload);
    }
    check_slack(&format::slack(&long_message()));
}

#[test]
fn discord_payloads_match_the_golden_file_and_the_embed_limits() {
    let payloads = all(format::discord);
    check_golden("discord", &payloads);
    for (name, payload) in payloads.as_object().unwrap() {
        eprintln!("discord {name}");
        check_discord(payload);
    }
    check_discord(&format::discord(&long_message()));
}

/// The `stdout` channel writes one line a terminal interprets nothing in.
#[test]
fn the_stdout_line_escapes_control_characters() {
    let line = String::from_utf8(format::payload(arbiter_config::ChannelType::Stdout, &mentions())).unwrap();
    assert!(!line.contains(char::is_control), "{line:?}");
    assert!(line.contains("\\u{1b}[31mred"), "{line}");
}

#[test]
fn webhook_payloads_match_the_golden_file_and_carry_the_whole_message() {
    let payloads = all(format::webhook);
    check_golden("webhook", &payloads);
    for (name, message) in variants() {
        check_webhook(&payloads[name], &message);
    }
    let long = long_message();
    check_webhook(&format::webhook(&long), &long);
}

#[test]
fn truncation_keeps_long_messages_within_every_limit_and_says_so() {
    let long = long_message();
    let slack = format::slack(&long);
    let header = slack["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(header.chars().count(), 150);
    assert!(header.ends_with('…'), "a cut is marked: {header}");
    let section = slack["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(section.chars().count(), 3000);
    assert!(section.ends_with('…'));
    let discord = format::discord(&long);
    let embed = &discord["embeds"][0];
    assert_eq!(chars(&embed["title"]), 256);
    assert!(embed["title"].as_str().unwrap().ends_with('…'));
    assert!(embed["description"].as_str().unwrap().ends_with('…'));
    let teams = format::teams(&long);
    let body = teams["attachments"][0]["content"]["body"][1]["text"].as_str().unwrap();
    assert!(body.ends_with('…'), "the Teams body is cut, and marked");
    // The headline itself is never cut in the webhook body: it carries the whole message.
    assert_eq!(
        format::webhook(&long)["notification"]["body"],
        long.notification.body.as_str()
    );
}

#[test]
fn severity_is_visible_in_every_format() {
    let mut seen = Vec::new();
    for (severity, emoji, label) in [
        (Severity::Info, "ℹ️", "[INFO]"),
        (Severity::Warning, "⚠️", "[WARNING]"),
        (Severity::Critical, "🔴", "[CRITICAL]"),
    ] {
        let m = message(MessageType::Alert, notification(severity), fold(1));
        let slack = format::slack(&m);
        let header = slack["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            header.starts_with(emoji) && header.contains(label),
            "slack header: {header}"
        );
        assert!(
            slack["text"].as_str().unwrap().starts_with(emoji),
            "the notification fallback too"
        );
        let teams = format::teams(&m);
        let headline = &teams["attachments"][0]["content"]["body"][0];
        assert!(
            headline["text"].as_str().unwrap().starts_with(emoji) && headline["text"].as_str().unwrap().contains(label)
        );
        let discord = format::discord(&m);
        assert!(discord["embeds"][0]["title"].as_str().unwrap().contains(label));
        let webhook = format::webhook(&m);
        assert_eq!(webhook["notification"]["severity"], severity.as_str());
        let stdout = String::from_utf8(format::payload(arbiter_config::ChannelType::Stdout, &m)).unwrap();
        assert!(stdout.starts_with(emoji) && stdout.contains(label), "stdout: {stdout}");
        seen.push((headline["color"].clone(), discord["embeds"][0]["color"].clone()));
    }
    // Each severity has its own colour in Teams and in Discord.
    for i in 0..seen.len() {
        for j in i + 1..seen.len() {
            assert_ne!(seen[i].0, seen[j].0, "Teams colours differ by severity");
            assert_ne!(seen[i].1, seen[j].1, "Discord colours differ by severity");
        }
    }
    assert_eq!(seen[2].0, "Attention", "critical is Teams' attention colour");
}

#[test]
fn folded_and_recovery_messages_say_the_count_and_since_when() {
    let variants: BTreeMap<_, _> = variants().into_iter().collect();
    let folded = format::render(&variants["folded"]);
    assert_eq!(
        folded.headline,
        "🔴 [CRITICAL] web-deploy failed: tests red on main (×30 since 2025-12-31T20:35:00Z)"
    );
    let first = format::render(&variants["alert"]);
    assert!(
        !first.headline.contains('×'),
        "the first occurrence is not a repeat: {}",
        first.headline
    );
    let recovery = format::render(&variants["recovery"]);
    assert_eq!(
        recovery.headline,
        "✅ RESOLVED: web-deploy failed: tests red on main — after 37 occurrence(s) over 3h25m"
    );
    assert_eq!(
        recovery.color, 0x27AE60,
        "a recovery is green whatever the severity was"
    );
    let slack = format::slack(&variants["recovery"]);
    assert!(slack["text"].as_str().unwrap().contains("after 37 occurrence(s)"));
    let discord = format::discord(&variants["recovery"]);
    assert_eq!(discord["embeds"][0]["color"], json!(0x27AE60));
    let teams = format::teams(&variants["recovery"]);
    assert_eq!(teams["attachments"][0]["content"]["body"][0]["color"], "Good");
}
