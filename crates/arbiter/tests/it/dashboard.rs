//! The dashboard (`GET /` of `arbiter serve`) in a real headless Chromium, driven over
//! WebDriver (`chromedriver`, Debian's `chromium` and `chromium-driver`, installed by
//! `.ci/run`): a real `arbiter serve` and a real `arbiter watch` running a loop on the test's
//! store. The page loads, shows the loop, and follows it live (its round goes up without a
//! reload); a lease taken meanwhile appears, its hostile holder shown as text; an unknown
//! token (401), a namespace out of reach (403) and a bad one (400) are errors shown in the
//! page; a token given in the form with `status:read` only shows the loops and no more; no
//! secret is in the server's log.
//!
//! Without chromium or chromedriver the test is skipped, loudly, except under `CI`, where
//! it fails. Every wait is bounded.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{Background, SOON, Store, block_on};
use arbiter_testkit::{each_backend, eventually, eventually_async};

each_backend!(
    Store;
    the_page_follows_a_running_loop_and_shows_hostile_names_as_text,
);

/// The most the browser part may take as a whole: every step inside is bounded too.
const BROWSER_LIMIT: Duration = Duration::from_secs(180);

/// An agent name that would run script if it were inserted as HTML.
const HOSTILE_AGENT: &str = r#"<img src=x onerror="document.title='pwned'"><b>bold</b>"#;
/// A lease name with the characters of markup and URLs the name rules allow.
const HOSTILE_LEASE: &str = "javascript:alert/..x@evil.example";

const LOOP_CONFIG: &str = r#"
[loops.tick]
repo = "repo"
every = "300ms"
command = ["sh", "-c", "sleep 0.2"]
timeout = "1m"
"#;

/// Chromium and its WebDriver, where the test can use them: on `PATH`. Outside CI their
/// absence skips the test, loudly.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    if let (Some(chromium), Some(driver)) = (find("chromium"), find("chromedriver")) {
        return Some((chromium, driver));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium or chromedriver is missing under CI: .ci/run installs Debian's chromium and chromium-driver"
    );
    eprintln!(
        "SKIPPED the dashboard's browser test: chromium or chromedriver is not on PATH \
         (apt-get install chromium chromium-driver)"
    );
    None
}

/// A free loopback port (for chromedriver, which takes a port, not a listener).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("its address").port()
}

/// `arbiter serve` (tokens required) on a port the OS chose; returns it and the address
/// it printed.
fn serve(store: &Store) -> (Background, SocketAddr) {
    let cmd = store.cmd(&["serve", "--listen", "127.0.0.1:0"]);
    let mut server = Background::start(cmd, store.scratch.path(), "serve");
    let addr = eventually(SOON, "arbiter serve to print its address", || {
        assert!(server.running(), "arbiter serve exited: {}", server.stderr());
        let stderr = server.stderr();
        let (_, rest) = stderr.split_once("serving on http://")?;
        // Only a whole line: a port cut short by a read mid-write parses too.
        rest.split_once('\n')?.0.trim().parse::<SocketAddr>().ok()
    });
    (server, addr)
}

/// A token of namespace `default` with `scopes`; its secret.
fn token(store: &Store, name: &str, scopes: &str) -> String {
    let out = store.ok(&["token", "create", "--name", name, "--scope", scopes]);
    out.stdout.lines().next().expect("the secret").to_string()
}

/// `arbiter watch` of a config with one loop, `tick`, running a short command.
fn watch(store: &Store) -> Background {
    let dir = store.scratch.path();
    for d in ["repo", "home", "logs"] {
        std::fs::create_dir_all(dir.join(d)).expect("a fleet directory");
    }
    let config = dir.join("arbiter.toml");
    std::fs::write(&config, LOOP_CONFIG).expect("the config is written");
    let mut cmd = store.cmd(&["watch"]);
    cmd.arg("--config")
        .arg(&config)
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .env("HOME", dir.join("home"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("ARBITER_CONFIG");
    Background::start(cmd, dir, "watch")
}

/// The cells' text of every body row of table `#id`, as the page shows it.
async fn rows(browser: &Client, id: &str) -> Vec<Vec<String>> {
    let script = "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))\
                  .map(tr => Array.from(tr.cells).map(td => td.textContent));";
    let value = browser.execute(script, vec![json!(id)]).await.expect("the script runs");
    serde_json::from_value(value).expect("rows of strings")
}

/// What `expression` evaluates to in the page.
async fn eval(browser: &Client, expression: &str) -> Value {
    browser
        .execute(&format!("return {expression};"), vec![])
        .await
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// The `tick` loop's row: its round.
async fn tick_round(browser: &Client) -> Option<i64> {
    let rows = rows(browser, "loops").await;
    let row = rows.iter().find(|cells| cells[0] == "tick")?;
    row[3].parse().ok()
}

/// The error the page shows, once it starts with `prefix`.
async fn error_shown(browser: &Client, prefix: &str) -> String {
    eventually_async(
        SOON,
        &format!("the page to show an error starting {prefix:?}"),
        || async {
            let error = eval(browser, "document.getElementById('error').textContent").await;
            error
                .as_str()
                .filter(|text| text.starts_with(prefix))
                .map(str::to_string)
        },
    )
    .await
}

fn the_page_follows_a_running_loop_and_shows_hostile_names_as_text(store: &Store) {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let secrets = Secrets {
        all: token(store, "dashboard", "status:read,lease:read,notify:read,limit:read"),
        status: token(store, "status-only", "status:read"),
    };
    let (server, addr) = serve(store);
    let _watch = watch(store);
    let port = free_port();
    let mut driver = Command::new(chromedriver);
    driver.arg(format!("--port={port}")).env_remove("CHROME_LOG_FILE");
    let _driver = Background::start(driver, store.scratch.path(), "chromedriver");
    let profile = store.scratch.path().join("chromium-profile");

    block_on(async {
        tokio::time::timeout(BROWSER_LIMIT, async {
            let browser = connect(port, &chromium, &profile).await;
            let result = scenario(store, &browser, addr, &secrets).await;
            let _ = browser.close().await;
            result
        })
        .await
        .expect("the browser part finished in time");
    });
    let log = server.stderr();
    assert!(
        !log.contains(&secrets.all) && !log.contains(&secrets.status),
        "a secret in the server's log: {log}"
    );
}

/// The secrets of two tokens of namespace `default`: one reads all the dashboard shows,
/// the other only `status:read`.
struct Secrets {
    all: String,
    status: String,
}

/// A headless Chromium session of chromedriver on `port` (retried while it starts).
async fn connect(port: u16, chromium: &std::path::Path, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", format!("--user-data-dir={}", profile.display())],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    eventually_async(SOON, "chromedriver to start a session", || {
        let capabilities = capabilities.clone();
        let url = url.clone();
        async move {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&url)
                .await
            {
                Ok(client) => Some(client),
                Err(e) => {
                    eprintln!("chromedriver not ready: {e}");
                    None
                }
            }
        }
    })
    .await
}

async fn scenario(store: &Store, browser: &Client, addr: SocketAddr, secrets: &Secrets) {
    // A token the server does not know: 401, shown with what to do.
    browser
        .goto(&format!("http://{addr}/#token=arb_not_a_token&ns=default"))
        .await
        .expect("the page loads");
    assert_eq!(browser.title().await.expect("a title"), "arbiter · fleet");
    let error = error_shown(browser, "401").await;
    assert!(error.contains("unauthorized") && error.contains("#token="), "{error}");
    assert_eq!(
        eval(browser, "document.getElementById('conn').dataset.state").await,
        json!("failed")
    );
    // The fragment (where a token goes) is taken out of the address bar at once.
    let url = browser.current_url().await.expect("a URL");
    assert_eq!(url.fragment(), None, "{url}");

    // The right token, pasted into the open page's address bar.
    browser
        .goto(&format!("http://{addr}/#token={}&ns=default", secrets.all))
        .await
        .expect("the page takes the token");

    // The loop appears, and its rounds go up without a reload (the marker would be gone).
    let first = eventually_async(SOON, "the page to show loop tick with a round", || async {
        tick_round(browser).await.filter(|round| *round >= 1)
    })
    .await;
    eval(browser, "(window.__noReload = 42)").await;
    eventually_async(SOON, "the page to show a later round of tick", || async {
        tick_round(browser).await.filter(|round| *round >= first + 2)
    })
    .await;
    assert_eq!(
        eval(browser, "window.__noReload").await,
        json!(42),
        "the page was reloaded"
    );
    let conn = eval(browser, "document.getElementById('conn').dataset.state").await;
    assert_eq!(conn, json!("live"));
    let loops = rows(browser, "loops").await;
    let tick = loops.iter().find(|cells| cells[0] == "tick").expect("the loop row");
    assert!(
        ["running", "idle"].contains(&tick[1].as_str()),
        "the loop's state: {tick:?}"
    );

    // A lease taken now appears, its name and holder as text; no markup of theirs is live.
    store.ok(&[
        "lease",
        "acquire",
        HOSTILE_LEASE,
        "--ttl",
        "5m",
        "--holder",
        HOSTILE_AGENT,
    ]);
    let lease = eventually_async(SOON, "the page to show the lease", || async {
        rows(browser, "leases")
            .await
            .into_iter()
            .find(|cells| cells[0] == HOSTILE_LEASE)
    })
    .await;
    assert_eq!(lease[1], HOSTILE_AGENT, "the holder, shown as typed: {lease:?}");
    assert_eq!(
        eval(browser, "document.querySelectorAll('main img, main b').length").await,
        json!(0)
    );
    assert_eq!(browser.title().await.expect("a title"), "arbiter · fleet");
    assert_eq!(
        eval(browser, "window.__noReload").await,
        json!(42),
        "the page was reloaded"
    );

    // A bucket defined now appears among the limits; the outbox is empty.
    store.ok(&["limit", "define", "github/octo/core", "--rate", "5000/h"]);
    let bucket = eventually_async(SOON, "the page to show the bucket", || async {
        rows(browser, "limits")
            .await
            .into_iter()
            .find(|cells| cells[0] == "github/octo/core")
    })
    .await;
    assert_eq!(bucket[1], "5000/h", "{bucket:?}");
    let outbox = eval(browser, "document.getElementById('outbox-summary').textContent").await;
    assert_eq!(outbox, json!("0 pending · 0 dead"));

    // A namespace the token does not reach: 403; one that cannot be: 400.
    browser
        .goto(&format!("http://{addr}/#ns=elsewhere"))
        .await
        .expect("the page goes to the namespace");
    let error = error_shown(browser, "403").await;
    assert!(error.contains("forbidden") && error.contains("elsewhere"), "{error}");
    browser
        .goto(&format!("http://{addr}/#ns=Not_A_Namespace"))
        .await
        .expect("the page goes to the namespace");
    let error = error_shown(browser, "400").await;
    assert!(
        error.contains("bad_input") && error.contains("Not_A_Namespace"),
        "{error}"
    );
    let conn = eval(browser, "document.getElementById('conn').dataset.state").await;
    assert_eq!(conn, json!("failed"));

    // Through the form, a token with status:read only: the loops, and no more.
    let ns = browser.find(Locator::Id("ns")).await.expect("the namespace field");
    ns.clear().await.expect("the field clears");
    ns.send_keys("default").await.expect("typed");
    let field = browser.find(Locator::Id("token")).await.expect("the token field");
    field.send_keys(&secrets.status).await.expect("typed");
    field.send_keys("\u{E007}").await.expect("enter pressed");
    eventually_async(SOON, "the page to show loop tick again", || async {
        tick_round(browser).await
    })
    .await;
    let text = |id: &str| format!("document.getElementById('{id}').textContent");
    assert_eq!(
        eval(browser, &text("leases-empty")).await,
        json!("this token cannot read leases (lease:read)")
    );
    assert_eq!(
        eval(browser, &text("outbox-summary")).await,
        json!("this token cannot read the outbox (notify:read)")
    );
    assert_eq!(rows(browser, "leases").await, Vec::<Vec<String>>::new());
    assert_eq!(eval(browser, "document.getElementById('token').value").await, json!(""));
}
