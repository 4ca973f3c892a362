//! Delivery end to end: the outbox, a dispatcher (library API, in the test) and a real
//! HTTP receiver on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbiter_core::ErrorKind;
use arbiter_store::{DeliveryState, Store};
use serde_json::Value;

use crate::support::{accept, config, dispatch_once, message_id, note, ns, open_store, start_dispatcher};
use arbiter_testkit::eventually_async;
use arbiter_testkit::receiver::{Answer, Behaviour, Receiver, Request};

/// The numeric outbox id in a message id (`fleet-17` → 17).
fn number(id: &str) -> i64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a message id: {id}"))
}

/// The distinct ids of `taken`, in the order they first arrived.
fn first_arrivals(taken: &[Request]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    taken
        .iter()
        .map(|r| r.id().to_string())
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

// 37 occurrences of one condition, then its resolution: 4 alerts (the 1st, 3rd, 10th and
// 30th occurrence, each saying so) and one recovery — per channel.
arbiter_testkit::each_backend!(
    a_storm_of_37_then_resolve_sends_exactly_5_messages,
    |url: String| async move {
        let receiver = Receiver::start();
        let config = config(&format!(
            r#"
[channels.hook]
type = "webhook"
url = "{hook}"

[channels.chat]
type = "slack"
url = "{chat}"

[[routes]]
kinds = ["loop.*"]
channels = ["hook", "chat"]
"#,
            hook = receiver.url("/hook"),
            chat = receiver.url("/chat"),
        ));
        let store = open_store(&url).await;
        let key = "web-deploy/tests";
        for i in 1..=37u64 {
            let mut n = note("loop.failure", "web-deploy failed", Some(key));
            n.body = format!("run {i}");
            let accepted = accept(&store, &config, n).await;
            assert_eq!(accepted.count, i);
            assert_eq!(
                accepted.sent,
                [1, 3, 10, 30].contains(&i),
                "occurrence {i}: {accepted:?}"
            );
            assert_eq!(accepted.deliveries.len(), if accepted.sent { 2 } else { 0 });
        }
        let resolved = store
            .notify()
            .resolve(&ns(), key, Some("green again"))
            .await
            .expect("resolve");
        assert_eq!(resolved.count, 37);
        assert_eq!(resolved.deliveries.len(), 2, "a recovery to each channel that alerted");

        let report = dispatch_once(&store, &config).await;
        assert_eq!(
            (report.delivered, report.failed_attempts, report.dead),
            (10, 0, 0),
            "{report:?}"
        );
        receiver
            .wait_for_async(Duration::from_secs(5), "10 requests", |r| r.len() >= 10)
            .await;
        // Nothing more is due: a second pass sends nothing.
        assert_eq!(dispatch_once(&store, &config).await.delivered, 0);
        assert_eq!(receiver.count(), 10, "exactly 5 messages per channel");

        let hook = receiver.taken("/hook");
        let bodies: Vec<Value> = hook.iter().map(Request::json).collect();
        let summary: Vec<(String, u64, String)> = bodies
            .iter()
            .map(|b| {
                (
                    b["type"].as_str().unwrap().to_string(),
                    b["fold"]["count"].as_u64().unwrap(),
                    b["notification"]["body"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected = [
            ("alert", 1, "run 1"),
            ("alert", 3, "run 3"),
            ("alert", 10, "run 10"),
            ("alert", 30, "run 30"),
            ("recovery", 37, "green again"),
        ]
        .map(|(t, c, b)| (t.to_string(), c, b.to_string()));
        assert_eq!(summary, expected);
        let first_at = &bodies[0]["fold"]["first_at"];
        assert!(
            bodies.iter().all(|b| &b["fold"]["first_at"] == first_at),
            "every message counts from the first occurrence"
        );
        assert!(bodies.iter().all(|b| b["fold"]["dedupe_key"] == key));
        assert!(
            bodies[4]["resolved_at"].is_i64(),
            "the recovery says when the condition cleared"
        );
        assert_eq!(first_arrivals(&hook).len(), 5, "5 distinct messages");

        let chat: Vec<String> = receiver
            .taken("/chat")
            .iter()
            .map(|r| r.json()["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(chat.len(), 5, "{chat:#?}");
        assert_eq!(chat[0], "⚠️ [WARNING] web-deploy failed");
        for (text, count) in chat[1..4].iter().zip([3, 10, 30]) {
            assert!(
                text.starts_with(&format!("⚠️ [WARNING] web-deploy failed (×{count} since ")),
                "the repeat says its count and since when: {text}"
            );
        }
        assert!(
            chat[4].starts_with("✅ RESOLVED: web-deploy failed — after 37 occurrence(s) over "),
            "the recovery says how many and how long: {}",
            chat[4]
        );
    }
);

/// One stage of the outage, in the order the issue names them.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Unavailable,
    TooMany,
    Refused,
    Hanging,
}

const CHANNELS: [&str; 2] = ["a", "b"];

/// Waits until the dispatcher has met `stage` on every channel since `since` (the
/// receiver's request count when the stage began).
async fn met(stage: Stage, receiver: &Receiver, store: &Store, since: usize, attempts_before: &BTreeMap<i64, u32>) {
    let limit = Duration::from_secs(5);
    let answer = match stage {
        Stage::Unavailable => Answer::Status(503),
        Stage::TooMany => Answer::Status(429),
        Stage::Hanging => Answer::Hung,
        Stage::Refused => {
            // Nothing arrives: the store shows the refused attempts.
            eventually_async(limit, "a refused attempt on every channel", || async {
                let pending = store
                    .notify()
                    .list(&ns(), Some(DeliveryState::Pending), 1000)
                    .await
                    .ok()?;
                CHANNELS
                    .iter()
                    .all(|c| {
                        pending.iter().any(|e| {
                            e.channel == *c
                                && e.last_error
                                    .as_deref()
                                    .is_some_and(|err| err.ends_with("connection failed"))
                                && e.attempts > attempts_before.get(&e.id).copied().unwrap_or(0)
                        })
                    })
                    .then_some(())
            })
            .await;
            return;
        }
    };
    receiver
        .wait_for_async(limit, &format!("a {answer:?} on every channel"), |requests| {
            CHANNELS.iter().all(|c| {
                requests[since.min(requests.len())..]
                    .iter()
                    .any(|r| r.path == format!("/{c}") && r.answer == answer)
            })
        })
        .await;
}

// The receiver answers 503, then 429 with Retry-After, then refuses connections, then
// hangs past the timeout — twice over — while 200 notifications are accepted for two
// channels and a dispatcher runs throughout. After it recovers: every one delivered, in
// order per channel; repeats (at least once) carry the same id and body.
arbiter_testkit::each_backend!(
    an_outage_loses_nothing_and_keeps_per_channel_order,
    |url: String| async move {
        let receiver = Receiver::start();
        let config = config(&format!(
            r#"
[notifications]
timeout = "300ms"
backoff = "50ms"
backoff_max = "300ms"
max_age = "1h"

[channels.a]
type = "webhook"
url = "{a}"

[channels.b]
type = "webhook"
url = "{b}"

[[routes]]
kinds = ["outage.a"]
channels = ["a"]

[[routes]]
kinds = ["outage.b"]
channels = ["b"]
"#,
            a = receiver.url("/a"),
            b = receiver.url("/b"),
        ));
        let store = open_store(&url).await;
        receiver.set(Behaviour::Status(503));
        let dispatcher = start_dispatcher(&store, &config).await;

        let started = tokio::time::Instant::now();
        let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut n = 0;
        let stages = [Stage::Unavailable, Stage::TooMany, Stage::Refused, Stage::Hanging];
        for stage in stages.iter().chain(stages.iter()).copied() {
            let since = receiver.count();
            let attempts_before: BTreeMap<i64, u32> = store
                .notify()
                .list(&ns(), Some(DeliveryState::Pending), 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.id, e.attempts))
                .collect();
            match stage {
                Stage::Refused => receiver.refuse(),
                other => {
                    receiver.set(match other {
                        Stage::Unavailable => Behaviour::Status(503),
                        Stage::TooMany => Behaviour::TooMany { retry_after: 1 },
                        _ => Behaviour::Hang(Duration::from_millis(600)),
                    });
                    receiver.listen();
                }
            }
            // 25 notifications per stage, alternating channels.
            for _ in 0..25 {
                let channel = CHANNELS[n % 2];
                let accepted = accept(
                    &store,
                    &config,
                    note(&format!("outage.{channel}"), &format!("message {n:03}"), None),
                )
                .await;
                assert_eq!(accepted.deliveries.len(), 1);
                expected
                    .entry(channel)
                    .or_default()
                    .push(message_id(accepted.deliveries[0]));
                n += 1;
            }
            met(stage, &receiver, &store, since, &attempts_before).await;
            eprintln!("stage {stage:?} met on both channels at {:?}", started.elapsed());
        }
        assert_eq!(n, 200);
        let taken_during_outage = receiver.requests().iter().filter(|r| r.taken()).count();

        // Recovery.
        receiver.set(Behaviour::Ok);
        receiver.listen();
        receiver
            .wait_for_async(Duration::from_secs(20), "all 200 notifications delivered", |requests| {
                CHANNELS.iter().all(|c| {
                    let ids: BTreeSet<&str> = requests
                        .iter()
                        .filter(|r| r.path == format!("/{c}") && r.taken())
                        .map(|r| r.id())
                        .collect();
                    ids.len() >= expected[c].len()
                })
            })
            .await;
        eventually_async(
            Duration::from_secs(10),
            "the store to record every delivery",
            || async {
                let pending = store
                    .notify()
                    .list(&ns(), Some(DeliveryState::Pending), 1000)
                    .await
                    .ok()?;
                pending.is_empty().then_some(())
            },
        )
        .await;
        eprintln!("all delivered at {:?}", started.elapsed());
        let report = dispatcher.stop().await;

        let requests = receiver.requests();
        let mut duplicates = 0;
        for c in CHANNELS {
            let path = format!("/{c}");
            let taken: Vec<Request> = requests
                .iter()
                .filter(|r| r.path == path && r.taken())
                .cloned()
                .collect();
            let firsts = first_arrivals(&taken);
            // None lost, none extra, and in order: the first arrival of each message follows
            // the order they were accepted in.
            assert_eq!(firsts, expected[c], "channel {c}: first arrivals in accept order");
            assert!(
                firsts.windows(2).all(|w| number(&w[0]) < number(&w[1])),
                "ids increase per channel"
            );
            duplicates += taken.len() - firsts.len();
            // Every attempt of one message (failed ones too) carries the same id and body.
            let mut bodies: BTreeMap<&str, &[u8]> = BTreeMap::new();
            for r in requests.iter().filter(|r| r.path == path) {
                let body = r.json();
                assert_eq!(body["id"], r.id(), "X-Arbiter-Id is the body's id");
                assert_eq!(
                    body["notification"]["kind"],
                    format!("outage.{c}"),
                    "nothing crosses channels"
                );
                assert!(
                    expected[c].iter().any(|id| id == r.id()),
                    "{} was accepted for {c}",
                    r.id()
                );
                let first = bodies.entry(r.id()).or_insert(&r.body);
                assert_eq!(*first, &r.body[..], "a retry of {} sends the same bytes", r.id());
            }
        }
        let distinct: usize = CHANNELS
            .iter()
            .map(|c| first_arrivals(&receiver.taken(&format!("/{c}"))).len())
            .sum();
        assert_eq!(distinct, 200, "200 distinct messages arrived");
        let failed = requests.iter().filter(|r| !r.taken()).count();
        eprintln!(
            "outage: {} requests, {failed} answered with an error, {taken_during_outage} taken during the outage (hung), \
         {duplicates} duplicate(s) deduped by id; dispatcher: {report:?}",
            requests.len()
        );
        assert!(report.failed_attempts > 0 && report.dead == 0, "{report:?}");
        let delivered = store
            .notify()
            .list(&ns(), Some(DeliveryState::Delivered), 1000)
            .await
            .unwrap();
        assert_eq!(delivered.len(), 200, "the store has all 200 delivered");
        assert!(
            store
                .notify()
                .list(&ns(), Some(DeliveryState::Dead), 1000)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

// A receiver that answers 500 forever: after max_age the notification is dead, with the
// last error; a retry, once the receiver is back, delivers it — with the same id.
arbiter_testkit::each_backend!(
    a_notification_past_max_age_is_dead_then_retried,
    |url: String| async move {
        let receiver = Receiver::start();
        let config = config(&format!(
            r#"
[notifications]
max_age = "1s"
backoff = "50ms"
backoff_max = "200ms"
timeout = "2s"

[channels.ops]
type = "webhook"
url = "{url}"

[[routes]]
channels = ["ops"]
"#,
            url = receiver.url("/ops"),
        ));
        let store = open_store(&url).await;
        receiver.set(Behaviour::Status(500));
        let id = accept(&store, &config, note("loop.failure", "it broke", None))
            .await
            .deliveries[0];
        let dispatcher = start_dispatcher(&store, &config).await;
        let dead = eventually_async(Duration::from_secs(10), "the notification to be dead", || async {
            let dead = store.notify().list(&ns(), Some(DeliveryState::Dead), 10).await.ok()?;
            dead.into_iter().find(|e| e.id == id)
        })
        .await;
        assert_eq!(
            dead.last_error.as_deref(),
            Some("HTTP 500: receiver says 500"),
            "{dead:?}"
        );
        assert!(dead.attempts >= 2, "it was retried before it died: {dead:?}");
        assert_eq!(dead.delivered_at, None);
        let attempts = receiver.requests();
        assert!(
            attempts
                .iter()
                .all(|r| r.id() == message_id(id) && r.answer == Answer::Status(500))
        );
        let tries = attempts.len();
        assert_eq!(tries as u32, dead.attempts, "each attempt reached the receiver");

        // Only a dead notification can be retried.
        receiver.set(Behaviour::Ok);
        let retried = store.notify().retry(&ns(), id).await.expect("retry");
        assert_eq!((retried.state, retried.attempts), (DeliveryState::Pending, 0));
        receiver
            .wait_for_async(Duration::from_secs(10), "the retried notification", |r| {
                r.iter().any(Request::taken)
            })
            .await;
        let delivered = eventually_async(Duration::from_secs(10), "the store to record the delivery", || async {
            let all = store.notify().list(&ns(), None, 10).await.ok()?;
            all.into_iter()
                .find(|e| e.id == id && e.state == DeliveryState::Delivered)
        })
        .await;
        assert!(delivered.delivered_at.is_some());
        let report = dispatcher.stop().await;
        assert_eq!(report.dead, 1, "{report:?}");
        let taken = receiver.taken("/ops");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id(), message_id(id), "the same id after the retry");
        assert_eq!(taken[0].body, receiver.requests()[0].body, "the same message");
        let again = store
            .notify()
            .retry(&ns(), id)
            .await
            .expect_err("a delivered notification is not retried");
        assert_eq!(again.kind, ErrorKind::Conflict);
        assert!(again.message.contains("already delivered"), "{}", again.message);
        let missing = store
            .notify()
            .retry(&ns(), id + 1000)
            .await
            .expect_err("no such notification");
        assert_eq!(missing.kind, ErrorKind::NotFound);
    }
);

// rate = "5/s": the receiver's own clock sees at most one message per ~200 ms.
arbiter_testkit::each_backend!(a_channel_rate_limit_spaces_its_messages, |url: String| async move {
    let receiver = Receiver::start();
    let config = config(&format!(
        r#"
[channels.slow]
type = "webhook"
url = "{url}"
rate = "5/s"

[[routes]]
channels = ["slow"]
"#,
        url = receiver.url("/slow"),
    ));
    let store = open_store(&url).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(message_id(
            accept(&store, &config, note("news", &format!("item {i}"), None))
                .await
                .deliveries[0],
        ));
    }
    let report = dispatch_once(&store, &config).await;
    assert_eq!(report.delivered, 10);
    let taken = receiver.taken("/slow");
    assert_eq!(first_arrivals(&taken), ids, "all 10, in order");
    let gaps: Vec<Duration> = taken.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(150)),
        "messages are spaced by the rate (200 ms, less jitter): {gaps:?}"
    );
});

// Channels are independent: a rate-limited channel does not hold back the others. With
// "slow" at 1/s, all 10 of "fast" arrive before the 2nd of "slow" (the receiver's order).
arbiter_testkit::each_backend!(
    a_rate_limited_channel_does_not_hold_back_the_others,
    |url: String| async move {
        let receiver = Receiver::start();
        let config = config(&format!(
            r#"
[channels.slow]
type = "webhook"
url = "{slow}"
rate = "1/s"

[channels.fast]
type = "webhook"
url = "{fast}"

[[routes]]
kinds = ["slow"]
channels = ["slow"]

[[routes]]
channels = ["fast"]
"#,
            slow = receiver.url("/slow"),
            fast = receiver.url("/fast"),
        ));
        let store = open_store(&url).await;
        for i in 0..2 {
            accept(&store, &config, note("slow", &format!("slow {i}"), None)).await;
        }
        for i in 0..10 {
            accept(&store, &config, note("fast", &format!("fast {i}"), None)).await;
        }
        assert_eq!(dispatch_once(&store, &config).await.delivered, 12);
        let order: Vec<String> = receiver.requests().iter().map(|r| r.path.clone()).collect();
        let second_slow = order.iter().rposition(|p| p == "/slow").unwrap();
        let last_fast = order.iter().rposition(|p| p == "/fast").unwrap();
        assert!(last_fast < second_slow, "fast waited for slow's rate limit: {order:?}");
    }
);

// A channel whose receiver hangs does not hold back the others: while its first attempt
// is still in flight (timeout 5s), another channel delivers all 10 of its messages.
arbiter_testkit::each_backend!(
    a_hanging_channel_does_not_hold_back_the_others,
    |url: String| async move {
        let stuck = Receiver::start();
        stuck.set(Behaviour::Hang(Duration::from_secs(6)));
        let fine = Receiver::start();
        let config = config(&format!(
            r#"
[notifications]
timeout = "5s"

[channels.stuck]
type = "webhook"
url = "{stuck}"

[channels.fine]
type = "webhook"
url = "{fine}"

[[routes]]
kinds = ["stuck"]
channels = ["stuck"]

[[routes]]
channels = ["fine"]
"#,
            stuck = stuck.url("/stuck"),
            fine = fine.url("/fine"),
        ));
        let store = open_store(&url).await;
        let stuck_id = accept(&store, &config, note("stuck", "stuck", None)).await.deliveries[0];
        let dispatcher = start_dispatcher(&store, &config).await;
        stuck
            .wait_for_async(Duration::from_secs(5), "the first attempt to hang", |r| !r.is_empty())
            .await;
        for i in 0..10 {
            accept(&store, &config, note("fine", &format!("fine {i}"), None)).await;
        }
        fine.wait_for_async(Duration::from_secs(10), "10 messages on the fine channel", |r| {
            r.len() == 10
        })
        .await;
        let entries = store.notify().list(&ns(), None, 100).await.unwrap();
        let stuck_entry = entries.iter().find(|e| e.id == stuck_id).unwrap();
        assert_eq!(
            (stuck_entry.state, stuck_entry.attempts, stuck.count()),
            (DeliveryState::Pending, 0, 1),
            "all 10 arrived while the stuck channel's first attempt was still in flight"
        );
        dispatcher.stop().await;
    }
);

/// A routing case: title, kind, severity, tags, source, and the channels it must reach.
type Case = (
    &'static str,
    &'static str,
    arbiter_core::notify::Severity,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static [&'static str],
);

// Routing end to end: each kind/severity/tag/source reaches exactly the channels its
// route names (the first match wins unless `continue = true`; the default route takes the
// rest), as the receiver sees them.
arbiter_testkit::each_backend!(
    each_notification_reaches_exactly_its_routed_channels,
    |url: String| async move {
        let receiver = Receiver::start();
        let config = config(&format!(
            r#"
[channels.ops]
type = "webhook"
url = "{ops}"

[channels.sec]
type = "webhook"
url = "{sec}"

[channels.dev]
type = "webhook"
url = "{dev}"

[channels.rest]
type = "webhook"
url = "{rest}"

[[routes]]
kinds = ["security.*"]
channels = ["sec", "ops"]
continue = true

[[routes]]
kinds = ["loop.*", "security.*"]
min_severity = "critical"
channels = ["ops"]

[[routes]]
kinds = ["loop.*"]
min_severity = "warning"
tags = {{ repo = "web" }}
channels = ["dev"]

[[routes]]
source = "ci/*"
channels = ["dev"]

[[routes]]
channels = ["rest"]
"#,
            ops = receiver.url("/ops"),
            sec = receiver.url("/sec"),
            dev = receiver.url("/dev"),
            rest = receiver.url("/rest"),
        ));
        let store = open_store(&url).await;
        use arbiter_core::notify::Severity::{Critical, Info, Warning};
        // (title, kind, severity, tags, source, channels it must reach)
        let table: &[Case] = &[
            // continue = true: on to the next matching route — here the default one.
            ("s1", "security.finding", Info, &[], "x", &["sec", "ops", "rest"]),
            // … or the critical route, which stops there (ops once).
            ("s2", "security.finding", Critical, &[], "x", &["sec", "ops"]),
            ("l1", "loop.failure", Critical, &[("repo", "web")], "x", &["ops"]),
            ("l2", "loop.failure", Warning, &[("repo", "web")], "x", &["dev"]),
            ("l3", "loop.failure", Warning, &[("repo", "api")], "x", &["rest"]),
            ("l4", "loop.failure", Info, &[("repo", "web")], "x", &["rest"]),
            ("c1", "news", Info, &[], "ci/nightly", &["dev"]),
            ("n1", "news", Info, &[], "x", &["rest"]),
            ("n2", "looping", Critical, &[("repo", "web")], "x", &["rest"]),
        ];
        for (title, kind, severity, tags, source, _) in table {
            let mut n = note(kind, title, None);
            n.severity = *severity;
            n.source = source.to_string();
            n.tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            accept(&store, &config, n).await;
        }
        let expected_total: usize = table.iter().map(|row| row.5.len()).sum();
        assert_eq!(dispatch_once(&store, &config).await.delivered, expected_total as u64);
        for channel in ["ops", "sec", "dev", "rest"] {
            let got: BTreeSet<String> = receiver
                .taken(&format!("/{channel}"))
                .iter()
                .map(|r| r.json()["notification"]["title"].as_str().unwrap().to_string())
                .collect();
            let want: BTreeSet<String> = table
                .iter()
                .filter(|row| row.5.contains(&channel))
                .map(|row| row.0.to_string())
                .collect();
            assert_eq!(got, want, "channel {channel}");
        }
        assert_eq!(receiver.count(), expected_total, "each exactly once");
        // Nothing matches and there is no default route: refused, naming the file.
        let strict = crate::support::config(&format!(
            "[channels.ops]\ntype = \"webhook\"\nurl = \"{}\"\n\n[[routes]]\nkinds = [\"loop.*\"]\nchannels = [\"ops\"]\n",
            receiver.url("/ops")
        ));
        let err = arbiter_notify::accept(&store, &strict, &ns(), note("news", "unrouted", None), None)
            .await
            .expect_err("no route takes it");
        assert_eq!(err.kind, ErrorKind::BadInput);
        assert!(
            err.message.contains("no route in arbiter.toml takes kind \"news\""),
            "{}",
            err.message
        );
        // --channel picks a channel by id, bypassing routes; a display name is not an id.
        let accepted = arbiter_notify::accept(&store, &strict, &ns(), note("news", "direct", None), Some("ops"))
            .await
            .unwrap();
        assert_eq!(accepted.deliveries.len(), 1);
        let err = arbiter_notify::accept(&store, &strict, &ns(), note("news", "direct", None), Some("Ops"))
            .await
            .expect_err("unknown id");
        assert!(
            err.message.starts_with("--channel: unknown channel id \"Ops\""),
            "{}",
            err.message
        );
    }
);

// A digest route batches what it matches into one message per period: the receiver gets
// one `digest` message listing them (two if the accepts straddle a window's end), once
// the window closes — while another channel's messages go out at once.
arbiter_testkit::each_backend!(a_digest_route_sends_one_message_per_window, |url: String| async move {
    let receiver = Receiver::start();
    let config = config(&format!(
        r#"
[channels.log]
type = "webhook"
url = "{log}"

[channels.now]
type = "webhook"
url = "{now}"

[[routes]]
kinds = ["news"]
channels = ["log"]
digest = "3s"

[[routes]]
channels = ["now"]
"#,
        log = receiver.url("/log"),
        now = receiver.url("/now"),
    ));
    let store = open_store(&url).await;
    let dispatcher = start_dispatcher(&store, &config).await;
    for i in 0..3 {
        accept(&store, &config, note("news", &format!("news {i}"), None)).await;
    }
    // Windows are aligned to the clock, so the news may land just before one closes: the
    // order of the two channels says something only when the window was still open well
    // after the alert was accepted (the store's clock is this machine's).
    let alert_accepted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    accept(&store, &config, note("loop.failure", "at once", None)).await;
    receiver
        .wait_for_async(Duration::from_secs(15), "the digest", |requests| {
            let items: usize = requests
                .iter()
                .filter(|r| r.path == "/log")
                .map(|r| r.json()["items"].as_array().map_or(0, Vec::len))
                .sum();
            items >= 3
        })
        .await;
    eventually_async(Duration::from_secs(10), "the store to record the digest", || async {
        let pending = store
            .notify()
            .list(&ns(), Some(DeliveryState::Pending), 100)
            .await
            .ok()?;
        pending.is_empty().then_some(())
    })
    .await;
    dispatcher.stop().await;
    let delivered = store
        .notify()
        .list(&ns(), Some(DeliveryState::Delivered), 100)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 4, "3 entries in digests and one alert");
    let digests = receiver.taken("/log");
    assert!(
        (1..=2).contains(&digests.len()),
        "one message per window: {} message(s)",
        digests.len()
    );
    let mut titles = Vec::new();
    for digest in &digests {
        let body = digest.json();
        assert_eq!(body["type"], "digest");
        assert!(digest.id().starts_with("fleet-digest-log-"), "{}", digest.id());
        titles.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["title"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(titles, ["news 0", "news 1", "news 2"]);
    let now = receiver.taken("/now");
    assert_eq!(now.len(), 1);
    let window_end = delivered
        .iter()
        .filter_map(|e| e.digest_at)
        .max()
        .expect("a digest window");
    if window_end - alert_accepted_at >= 1000 {
        assert!(
            now[0].seq < digests[0].seq,
            "the other channel did not wait for the window"
        );
    }
});

/// A receiver whose error page echoes the request (path, query, full URL): the failed
/// attempt's error — what the store keeps and commands print — names the status and hides
/// the webhook's secrets.
#[tokio::test]
async fn an_error_page_echoing_the_url_is_redacted() {
    let receiver = Receiver::start();
    receiver.set(Behaviour::Echo(404));
    let config = config(&format!(
        "[channels.hook]\ntype = \"slack\"\nurl = \"{}\"\n",
        receiver.url("/services/T0KEN/SECRET-PATH?token=SECRET789")
    ));
    let channel = config.channel_by_id("hook").unwrap();
    let message = arbiter_core::notify::Message {
        id: "default-1".into(),
        message_type: arbiter_core::notify::MessageType::Alert,
        notification: note("news", "hello", None),
        fold: None,
        resolved_at: None,
        items: Vec::new(),
        created_at: 0,
    };
    let client = arbiter_notify::send::client(Duration::from_secs(10));
    match arbiter_notify::send::send(&client, channel, &message).await {
        arbiter_notify::send::Attempt::Failed { error, .. } => {
            assert!(error.starts_with("HTTP 404: no hook at"), "{error}");
            for secret in ["T0KEN", "SECRET-PATH", "SECRET789"] {
                assert!(!error.contains(secret), "{secret} in {error}");
            }
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(receiver.count(), 1, "the request did arrive");
}
