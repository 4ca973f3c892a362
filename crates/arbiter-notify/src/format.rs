//! Each channel's native payload for a message. Pure functions: the golden files in
//! `tests/golden` pin them, and the tests check each against its platform's documented
//! shape.

use std::time::{Duration, UNIX_EPOCH};

use arbiter_config::ChannelType;
use arbiter_core::notify::{Message, MessageType, Severity};
use arbiter_core::redact::printable;
use serde_json::{Value, json};

/// How a message looks to people, whatever the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: severity marker, title, fold count or recovery.
    pub headline: String,
    /// Markdown body (may be empty).
    pub body: String,
    /// Label and value pairs: kind, source, tags, dedupe key, id.
    pub facts: Vec<(String, String)>,
    /// 0xRRGGBB for the severity (green for a recovery).
    pub color: u32,
    /// Teams' TextBlock colour name for the same.
    pub teams_color: &'static str,
}

fn marker(severity: Severity) -> (&'static str, &'static str, u32, &'static str) {
    match severity {
        Severity::Info => ("ℹ️", "INFO", 0x2F80ED, "Accent"),
        Severity::Warning => ("⚠️", "WARNING", 0xF2994A, "Warning"),
        Severity::Critical => ("🔴", "CRITICAL", 0xEB5757, "Attention"),
    }
}

pub fn timestamp(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

fn span(ms: i64) -> String {
    let secs = (ms.max(0) / 1000) as u64;
    if secs == 0 {
        return format!("{}ms", ms.max(0));
    }
    arbiter_core::duration::format_duration(Duration::from_secs(secs))
}

/// The channel-independent view of a message.
pub fn render(message: &Message) -> Rendered {
    let n = &message.notification;
    let (emoji, label, mut color, mut teams_color) = marker(n.severity);
    let headline = match (message.message_type, &message.fold) {
        (MessageType::Recovery, fold) => {
            color = 0x27AE60;
            teams_color = "Good";
            let how = fold
                .as_ref()
                .map(|f| {
                    let lasted = message.resolved_at.unwrap_or(message.created_at) - f.first_at;
                    format!(" — after {} occurrence(s) over {}", f.count, span(lasted))
                })
                .unwrap_or_default();
            format!("✅ RESOLVED: {}{how}", n.title)
        }
        (MessageType::Digest, _) => format!("🗞️ Digest: {} notification(s)", message.items.len()),
        (MessageType::Test, _) => format!("🧪 TEST: {}", n.title),
        (MessageType::Alert, Some(fold)) if fold.count > 1 => {
            format!(
                "{emoji} [{label}] {} (×{} since {})",
                n.title,
                fold.count,
                timestamp(fold.first_at)
            )
        }
        (MessageType::Alert, _) => format!("{emoji} [{label}] {}", n.title),
    };
    let body = match message.message_type {
        MessageType::Digest => message
            .items
            .iter()
            .map(|item| {
                let (emoji, label, _, _) = marker(item.severity);
                format!("- {emoji} [{label}] {} ({})", item.title, item.kind)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => n.body.clone(),
    };
    let mut facts = vec![("Kind".to_string(), n.kind.clone())];
    if !n.source.is_empty() {
        facts.push(("Source".into(), n.source.clone()));
    }
    if !n.tags.is_empty() {
        facts.push((
            "Tags".into(),
            n.tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    if let Some(key) = &n.dedupe_key {
        facts.push(("Dedupe key".into(), key.clone()));
    }
    if message.message_type == MessageType::Digest {
        // A batch has no one kind or source: say how many it holds.
        facts = vec![("Notifications".to_string(), message.items.len().to_string())];
    }
    facts.push(("Id".into(), message.id.clone()));
    Rendered {
        headline,
        body,
        facts,
        color,
        teams_color,
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How many bytes `c` takes inside a JSON string.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `text` cut (and marked) so that it takes at most `max_bytes` inside a JSON string.
fn truncate_json_bytes(text: &str, max_bytes: usize) -> String {
    if text.chars().map(json_len).sum::<usize>() <= max_bytes {
        return text.to_string();
    }
    let budget = max_bytes.saturating_sub('…'.len_utf8());
    let mut used = 0;
    let mut out: String = text
        .chars()
        .take_while(|c| {
            used += json_len(*c);
            used <= budget
        })
        .collect();
    out.push('…');
    out
}

/// Teams rejects webhook payloads over 28 KB: the body and each fact are capped (in JSON
/// bytes) so that a whole card stays under it.
const TEAMS_BODY_BYTES: usize = 18 * 1024;
const TEAMS_FACT_BYTES: usize = 1024;
/// Discord: all of an embed's text (title, description, fields, footer) is at most this.
const DISCORD_EMBED_CHARS: usize = 6000;

/// Teams mentions are `<at>…</at>` in the text plus a `msteams.entities` entry: arbiter
/// never sends entities, and breaks every `<at` in the text with a word joiner (invisible)
/// so that no text of a notification can become a mention.
fn teams_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let tag = rest.trim_start_matches('/');
        if tag.len() >= 2 && tag.is_char_boundary(2) && tag[..2].eq_ignore_ascii_case("at") {
            out.push('\u{2060}');
        }
    }
    out.push_str(rest);
    out
}

/// Microsoft Teams (Workflows or incoming webhook): a message with one Adaptive Card.
pub fn teams(message: &Message) -> Value {
    let mut r = render(message);
    r.headline = teams_escape(&r.headline);
    r.body = teams_escape(&r.body);
    for (_, value) in &mut r.facts {
        *value = teams_escape(value);
    }
    let mut body = vec![json!({
        "type": "TextBlock", "text": r.headline, "weight": "Bolder", "size": "Medium",
        "wrap": true, "color": r.teams_color,
    })];
    if !r.body.is_empty() {
        body.push(json!({ "type": "TextBlock", "text": truncate_json_bytes(&r.body, TEAMS_BODY_BYTES), "wrap": true }));
    }
    body.push(json!({
        "type": "FactSet",
        "facts": r.facts.iter().map(|(t, v)| json!({
            "title": t, "value": truncate_json_bytes(v, TEAMS_FACT_BYTES),
        })).collect::<Vec<_>>(),
    }));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "msteams": { "width": "Full" },
            },
        }],
    })
}

/// Slack (incoming webhook): Block Kit, with `text` as the notification fallback.
pub fn slack(message: &Message) -> Value {
    let r = render(message);
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": truncate(&r.headline, 150), "emoji": true },
    })];
    if !r.body.is_empty() {
        let body = truncate(&slack_escape(&r.body), 3000);
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": body } }));
    }
    let context = r
        .facts
        .iter()
        .map(|(t, v)| format!("*{t}:* {}", slack_escape(v)))
        .collect::<Vec<_>>()
        .join("  ·  ");
    blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": truncate(&context, 3000) }] }));
    // `text` is what push notifications show, and Slack parses it: escaped like the rest.
    json!({ "text": truncate(&slack_escape(&r.headline), 3000), "blocks": blocks })
}

/// Slack's three control characters in mrkdwn text: without this, a body containing
/// `<!channel>` would notify a whole channel, and `<url|label>` would forge a link.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Discord (webhook): one embed, coloured by severity.
pub fn discord(message: &Message) -> Value {
    let r = render(message);
    let (id, facts): (Vec<_>, Vec<_>) = r.facts.iter().partition(|(t, _)| t == "Id");
    let title = truncate(&r.headline, 256);
    let fields: Vec<(String, String)> = facts
        .iter()
        .take(25)
        .map(|(t, v)| (truncate(t, 256), truncate(v, 1024)))
        .collect();
    let footer = truncate(id.first().map(|(_, v)| v.as_str()).unwrap_or_default(), 2048);
    let used = title.chars().count()
        + footer.chars().count()
        + fields
            .iter()
            .map(|(t, v)| t.chars().count() + v.chars().count())
            .sum::<usize>();
    let mut embed = json!({
        "title": title,
        "color": r.color,
        "fields": fields.iter().map(|(t, v)| json!({ "name": t, "value": v, "inline": true })).collect::<Vec<_>>(),
        "footer": { "text": footer },
        "timestamp": timestamp(message.created_at),
    });
    if !r.body.is_empty() {
        let room = DISCORD_EMBED_CHARS.saturating_sub(used).min(4096);
        embed["description"] = json!(truncate(&r.body, room));
    }
    // No @everyone, @here, role or user mention ever pings anyone, whatever the text says.
    json!({ "username": "arbiter", "embeds": [embed], "allowed_mentions": { "parse": [] } })
}

/// The generic JSON webhook body: the message itself (stable field names).
pub fn webhook(message: &Message) -> Value {
    serde_json::to_value(message).expect("messages serialize")
}

/// The payload for a channel type, as bytes to send or write.
pub fn payload(kind: ChannelType, message: &Message) -> Vec<u8> {
    match kind {
        ChannelType::Teams => teams(message).to_string().into_bytes(),
        ChannelType::Slack => slack(message).to_string().into_bytes(),
        ChannelType::Discord => discord(message).to_string().into_bytes(),
        ChannelType::Webhook | ChannelType::File => webhook(message).to_string().into_bytes(),
        ChannelType::Stdout => {
            let r = render(message);
            // One line for a terminal: no control character of the text reaches it.
            let mut line = printable(&r.headline);
            if !r.body.is_empty() {
                line.push_str(" — ");
                line.push_str(&printable(&r.body.replace('\n', " ")));
            }
            line.push_str(&format!(" [{}]", message.id));
            line.into_bytes()
        }
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` with `secret`, as the `X-Arbiter-Signature-256`
/// header carries it. To verify, compute the same over the raw request body and compare in
/// constant time.
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use arbiter_core::notify::{Message, MessageType, Notification, Severity};

    #[test]
    fn slack_text_cannot_mention_or_forge_links() {
        let message = Message {
            id: "default-1".into(),
            message_type: MessageType::Alert,
            notification: Notification {
                kind: "loop.failure".into(),
                severity: Severity::Warning,
                source: "<!here>".into(),
                title: "t".into(),
                body: "ping <!channel> & <https://evil.example|click>".into(),
                tags: Default::default(),
                dedupe_key: None,
            },
            fold: None,
            resolved_at: None,
            items: vec![],
            created_at: 0,
        };
        let payload = super::slack(&message).to_string();
        assert!(
            !payload.contains("<!channel>") && !payload.contains("<!here>"),
            "{payload}"
        );
        assert!(
            payload.contains("ping &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"),
            "{payload}"
        );
    }
}
