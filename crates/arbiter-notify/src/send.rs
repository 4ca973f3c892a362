//! One delivery attempt to one channel.

use std::io::Write;
use std::time::Duration;

use arbiter_config::{Channel, ChannelType, Target};
use arbiter_core::notify::Message;

use crate::format::{payload, signature};

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver took it (HTTP 2xx, or written).
    Delivered { status: Option<u16> },
    /// Not taken; try again. `after` is the receiver's `Retry-After`, when it gave one.
    Failed { error: String, after: Option<Duration> },
}

/// A shared HTTP client with the per-request timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    crate::init_tls();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("arbiter/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

/// Sends `message` to `channel`. Never returns the webhook URL's path in an error.
pub async fn send(client: &reqwest::Client, channel: &Channel, message: &Message) -> Attempt {
    let body = payload(channel.kind, message);
    match &channel.target {
        Target::Stdout => {
            println!("{}", String::from_utf8_lossy(&body));
            Attempt::Delivered { status: None }
        }
        Target::File(path) => match append_line(path, &body) {
            Ok(()) => Attempt::Delivered { status: None },
            Err(e) => Attempt::Failed {
                error: format!("cannot append to {}: {e}", path.display()),
                after: None,
            },
        },
        Target::Url(url) => {
            let mut request = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-arbiter-id", &message.id)
                .body(body.clone());
            if let (ChannelType::Webhook, Some(secret)) = (channel.kind, &channel.secret) {
                request = request.header("x-arbiter-signature-256", signature(secret, &body));
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Attempt::Delivered {
                            status: Some(status.as_u16()),
                        };
                    }
                    let after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(|s| Duration::from_secs_f64(s.min(24.0 * 3600.0)));
                    // A receiver may echo the request: its URL, path and anything token-shaped
                    // are hidden before the text reaches output, logs or the store.
                    let text = response.text().await.unwrap_or_default();
                    let secrets = url_secrets(url);
                    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                    let text = arbiter_core::redact::text(&text, &secrets);
                    let text: String = text.chars().take(200).collect();
                    Attempt::Failed {
                        error: format!("HTTP {}: {}", status.as_u16(), text.trim()),
                        after,
                    }
                }
                Err(e) => {
                    let why = if e.is_timeout() {
                        "timed out".to_string()
                    } else if e.is_connect() {
                        "connection failed".to_string()
                    } else {
                        e.without_url().to_string()
                    };
                    Attempt::Failed {
                        error: format!("{} {why}", arbiter_config::redact_url(url)),
                        after: None,
                    }
                }
            }
        }
    }
}

/// The parts of a webhook URL that are secret (what a receiver's error page might echo):
/// the URL itself, its path, query and password.
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_string()];
    if let Ok(parsed) = reqwest::Url::parse(url) {
        let path = Some(parsed.path()).filter(|p| p.len() > 1);
        for part in [path, parsed.query(), parsed.password()].into_iter().flatten() {
            secrets.push(part.to_string());
        }
    }
    secrets
}

fn append_line(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut line = body.to_vec();
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()
}

/// Whether `channel` could be delivered to, without sending anything: a TCP connection to
/// a URL's host and port (then closed), a `file` channel's directory, `stdout`. The answer
/// names the URL redacted.
pub async fn reachable(channel: &Channel, timeout: Duration) -> Result<String, String> {
    match &channel.target {
        Target::Stdout => Ok("standard output".into()),
        Target::File(path) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if dir.is_dir() {
                Ok(format!("{} (its directory exists)", path.display()))
            } else {
                Err(format!(
                    "{}: directory {} does not exist",
                    path.display(),
                    dir.display()
                ))
            }
        }
        Target::Url(url) => {
            let shown = arbiter_config::redact_url(url);
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("{shown}: {e}"))?;
            let host = parsed
                .host_str()
                .ok_or_else(|| format!("{shown}: no host"))?
                .to_string();
            let port = parsed
                .port_or_known_default()
                .ok_or_else(|| format!("{shown}: no port"))?;
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
                Ok(Ok(_)) => Ok(format!("{shown} accepts connections (nothing sent)")),
                Ok(Err(e)) => Err(format!("{shown}: cannot connect: {e}")),
                Err(_) => Err(format!("{shown}: no connection within {timeout:?}")),
            }
        }
    }
}
