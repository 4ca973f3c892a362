//! Fencing: a "zombie" holder that resumes after its lease expired is refused by a resource
//! that checks tokens.
//!
//! `arbiter lock fence --ttl 1s -- ZOMBIE` acquires the lease and runs a script that will
//! write to a resource with its token once told to. The test freezes the whole holder —
//! `arbiter lock` (so it stops renewing) and the script's process group — with SIGSTOP.
//! A second `arbiter lock fence --wait …` gets the lease once the frozen holder's TTL has
//! run out (by the store's clock), with a larger token, and writes. Then the zombie's
//! command is thawed (SIGCONT) and writes with its old token: the resource — a tiny TCP server in the
//! test that keeps the highest token it has seen and refuses smaller ones — refuses it and
//! keeps the newer holder's data. Then its `arbiter lock` is thawed and reports the loss
//! (exit 4).
//!
//! The zombie is frozen only outside a store transaction: a process frozen inside one
//! (holding SQLite's write lock, or a PostgreSQL row lock) blocks the next holder instead
//! of expiring — a different scenario, demonstrated in `frozen`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::common::{Group, KillGroup, LockProbe, read_file, report, signal_group};
use crate::support::{Store, exit_code, run, wait_bounded};
use arbiter_testkit::eventually;

/// What the resource saw: (token, data, accepted) per write.
#[derive(Debug, Default)]
struct Seen {
    highest: i64,
    data: Option<String>,
    writes: Vec<(i64, String, bool)>,
}

/// The protected resource: `WRITE TOKEN DATA` per connection, answered `OK` or
/// `REFUSED HIGHEST`; a write with a token smaller than the highest seen is refused.
struct Resource {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Resource {
    fn start() -> Resource {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the resource");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                // Ends when `stop` is set (Drop connects once more to wake it).
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &seen);
                    }
                }
            })
        };
        Resource {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Seen>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let mut fields = line.trim().splitn(3, ' ');
    let (Some("WRITE"), Some(token), Some(data)) = (fields.next(), fields.next(), fields.next()) else {
        let _ = (&stream).write_all(b"ERROR expected WRITE TOKEN DATA\n");
        return;
    };
    let Ok(token) = token.parse::<i64>() else {
        let _ = (&stream).write_all(b"ERROR bad token\n");
        return;
    };
    let reply = {
        let mut seen = seen.lock().expect("the resource state");
        let accepted = token >= seen.highest;
        seen.writes.push((token, data.to_string(), accepted));
        if accepted {
            seen.highest = token;
            seen.data = Some(data.to_string());
            "OK\n".to_string()
        } else {
            format!("REFUSED {}\n", seen.highest)
        }
    };
    let _ = (&stream).write_all(reply.as_bytes());
}

impl Drop for Resource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The zombie: records its token, ignores TERM (so it does write once thawed, even though
/// its `arbiter lock` stops it on the loss), waits for `go`, writes, records the answer.
const ZOMBIE: &str = r#"trap '' TERM
echo "$ARBITER_LEASE_TOKEN" >"$DIR/zombie.token.tmp" && mv "$DIR/zombie.token.tmp" "$DIR/zombie.token"
until [ -e "$DIR/go" ]; do sleep 0.01; done
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'WRITE %s zombie\n' "$ARBITER_LEASE_TOKEN" >&3
IFS= read -r reply <&3
echo "$reply" >"$DIR/zombie.reply.tmp" && mv "$DIR/zombie.reply.tmp" "$DIR/zombie.reply"
"#;

/// The newer holder: writes with its token and prints `TOKEN ANSWER`.
const NEWER: &str = r#"exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'WRITE %s newer\n' "$ARBITER_LEASE_TOKEN" >&3
IFS= read -r reply <&3
echo "$ARBITER_LEASE_TOKEN $reply"
"#;

fn zombie_is_refused(store: &Store, backend: &str) {
    store.ok(&["store", "migrate"]);
    let mut probe = LockProbe::new(store, "fence");
    let resource = Resource::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = resource.addr.port().to_string();
    let limit = Duration::from_secs(60);

    // The shortest grace: the holder-side deadline rule then counts the lease lost only at
    // 5/6 of the TTL, so the short freezes that look for a moment outside a transaction
    // do not end it.
    let mut cmd = store.cmd(&[
        "lock", "fence", "--ttl", "1s", "--grace", "1ms", "--", "bash", "-c", ZOMBIE,
    ]);
    let zombie_log = dir.path().join("zombie.stderr");
    cmd.env("DIR", dir.path())
        .env("PORT", &port)
        .stderr(std::fs::File::create(&zombie_log).expect("a log file"));
    let mut zombie = Group::spawn(&mut cmd);
    let zombie_token: i64 = eventually(limit, "the zombie's command to start", || {
        read_file(&dir.path().join("zombie.token"))
    })
    .parse()
    .expect("a token");
    let pgid = eventually(limit, "the command's process group in the lease", || {
        let show = store.ok(&["lease", "show", "fence", "--json"]).json();
        show["holders"][0]["holder"]["pgid"].as_u64()
    }) as u32;
    let _command_group = KillGroup(pgid);

    // Freeze the holder, outside any store transaction.
    let mut freezes = 0;
    loop {
        freezes += 1;
        zombie.signal(Signal::SIGSTOP);
        signal_group(pgid, Signal::SIGSTOP);
        if probe.store_is_free() {
            break;
        }
        assert!(
            freezes < 50,
            "the holder was inside a transaction at each of 50 freezes"
        );
        zombie.signal(Signal::SIGCONT);
        signal_group(pgid, Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(37));
    }

    // The next holder waits for the frozen holder's TTL to run out, then writes.
    let mut newer = store.cmd(&[
        "lock", "fence", "--ttl", "30s", "--wait", "60s", "--", "bash", "-c", NEWER,
    ]);
    newer.env("PORT", &port);
    let out = run(&mut newer);
    out.expect_code(0, "the newer holder");
    let (newer_token, answer) = out.stdout.trim().split_once(' ').expect("TOKEN ANSWER");
    let newer_token: i64 = newer_token.parse().expect("a token");
    assert_eq!(answer, "OK", "the newer holder's write is accepted");
    assert!(
        newer_token > zombie_token,
        "fencing tokens increase: {newer_token} > {zombie_token}"
    );

    // Thaw the zombie's command first (its `arbiter lock`, still frozen, would stop it at
    // once: the deadline rule counts the lease lost): it writes with its stale token.
    std::fs::write(dir.path().join("go"), "").expect("write go");
    signal_group(pgid, Signal::SIGCONT);
    let reply = eventually(limit, "the zombie's write", || {
        read_file(&dir.path().join("zombie.reply"))
    });
    zombie.signal(Signal::SIGCONT);
    assert_eq!(
        reply,
        format!("REFUSED {newer_token}"),
        "the resource refuses the zombie"
    );
    let status = wait_bounded(&mut zombie.child, limit).expect("the zombie's arbiter lock ends");
    assert_eq!(
        exit_code(status),
        4,
        "the zombie's arbiter lock reports the loss: {:?}",
        read_file(&zombie_log)
    );

    let seen = resource.seen.lock().expect("the resource state");
    assert_eq!(
        seen.data.as_deref(),
        Some("newer"),
        "the resource keeps the newer holder's data"
    );
    assert_eq!(seen.highest, newer_token);
    assert_eq!(
        seen.writes,
        [
            (newer_token, "newer".to_string(), true),
            (zombie_token, "zombie".to_string(), false)
        ]
    );
    report(&format!(
        "faults::fencing {backend}: zombie with token {zombie_token} (frozen {freezes}x to catch it outside a \
         transaction) refused after the newer holder wrote with token {newer_token}; its arbiter lock exited 4"
    ));
}

#[test]
fn sqlite_zombie_is_refused() {
    zombie_is_refused(&Store::sqlite(), "sqlite");
}

#[test]
fn postgres_zombie_is_refused() {
    if let Some(store) = Store::postgres("faults_fencing") {
        zombie_is_refused(&store, "postgres");
    }
}
