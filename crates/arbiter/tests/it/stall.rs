//! A holder whose store stalls: the command must be gone before anyone else gets the lease.
//!
//! The holder's link to the store stops answering while it holds a lease:
//! - PostgreSQL: its connection goes through a [`StallProxy`] that is frozen (the TCP
//!   connection stays open, no byte passes);
//! - SQLite: a second connection holds the write lock (`BEGIN IMMEDIATE`), so the holder's
//!   renew waits on the busy timeout (15 s), far longer than the TTL; the lock is held until
//!   the lease's expiry by the store's clock, then let go.
//!
//! Meanwhile a second acquirer tries, directly, until it is granted the lease. At the moment
//! it is, the first holder's command must be dead (`arbiter lock` exits 4), and two rounds of
//! one loop of `arbiter watch` must never run at once. The holder's deadline rule
//! (`arbiter_client::lease::Deadlines`) is what makes this hold.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_testkit::net::StallProxy;

use crate::support::{Background, SOON, Store, alive, postgres_addr};
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    lock_is_stopped_before_the_lease_goes_elsewhere,
    watch_never_runs_two_rounds_at_once
);

/// How the holder's link to the store is stalled.
enum Stall {
    Proxy(StallProxy),
    /// The SQLite file, and the connection holding its write lock while frozen.
    Sqlite(std::path::PathBuf, Option<rusqlite::Connection>),
}

impl Stall {
    fn new(store: &Store) -> Stall {
        match store.sqlite_path() {
            Some(path) => Stall::Sqlite(path.to_path_buf(), None),
            None => Stall::Proxy(StallProxy::start(postgres_addr(&store.url))),
        }
    }

    /// The store URL the stalled holder uses.
    fn url(&self, store: &Store) -> String {
        match self {
            Stall::Proxy(proxy) => proxy.postgres_url(&store.url),
            Stall::Sqlite(..) => store.url.clone(),
        }
    }

    /// Stops the holder's store calls. SQLite: returns when the write lock is ours.
    fn freeze(&mut self) {
        match self {
            Stall::Proxy(proxy) => proxy.freeze(),
            Stall::Sqlite(path, held) => {
                let conn = rusqlite::Connection::open(&*path).expect("open the store file");
                conn.busy_timeout(Duration::from_secs(30)).expect("a busy timeout");
                conn.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
                *held = Some(conn);
            }
        }
    }

    /// Lets the holder's store calls through again.
    fn resume(&mut self) {
        match self {
            Stall::Proxy(proxy) => proxy.resume(),
            Stall::Sqlite(_, held) => drop(held.take()),
        }
    }

    /// PostgreSQL: nothing (the second acquirer uses its own link; the holder's stays
    /// frozen). SQLite: holds the write lock until every lease of `name` has expired by the
    /// store's clock (nobody could renew meanwhile), then lets it go.
    fn until_the_store_could_grant(&mut self, name: &str) {
        let Stall::Sqlite(_, held) = self else { return };
        let conn = held.take().expect("frozen");
        let expiry: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(expires_at), 0) FROM lease_holders WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .expect("read the expiry");
        eventually(SOON, "the store's expiry of the lease", || {
            (now_ms() > expiry).then_some(())
        });
        conn.execute_batch("ROLLBACK").expect("let the write lock go");
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// The pids written, one per line, to `path`.
fn pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect()
}

/// Tries `lease acquire NAME` on the store directly until it is granted; at that moment
/// `pid` must be dead. Returns the number of attempts.
fn acquire_until_granted(store: &Store, name: &str, pid: u32) -> usize {
    let mut attempts = 0;
    eventually(SOON, &format!("a second acquirer to be granted {name:?}"), || {
        attempts += 1;
        let out = store.run(&["lease", "acquire", name, "--ttl", "1m"]);
        match out.code {
            0 => Some(()),
            3 => None,
            _ => panic!("unexpected answer while the holder is stalled: {out:?}"),
        }
    });
    assert!(
        !alive(pid),
        "the first holder's command (pid {pid}) still runs when the lease is granted to another"
    );
    attempts
}

/// `arbiter lock frz --ttl 2s -- CMD` with its store stalled: CMD (which ignores TERM, so
/// the grace is used up) is stopped before the store could grant the lease to the next
/// acquirer, and `lock` exits 4.
fn lock_is_stopped_before_the_lease_goes_elsewhere(store: &Store) {
    store.ok(&["store", "migrate"]);
    let mut stall = Stall::new(store);
    let pidfile = store.scratch.path().join("pid");
    let mut cmd = store.cmd(&[
        "lock",
        "frz",
        "--ttl",
        "2s",
        "--",
        "sh",
        "-c",
        r#"trap '' TERM; echo $$ > "$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE"; exec sleep 100"#,
    ]);
    cmd.env("ARBITER_STORE", stall.url(store)).env("PIDFILE", &pidfile);
    let mut lock = Background::start(cmd, store.scratch.path(), "lock");
    let holder = store.wait_for_lock_holder("frz", &mut lock);
    lock.also_kill_group(holder["holder"]["pgid"].as_u64().expect("a pgid") as u32);
    let pid = eventually(SOON, "the command's pid", || pids(&pidfile).first().copied());
    assert!(alive(pid), "the command runs");

    stall.freeze();
    stall.until_the_store_could_grant("frz");
    let attempts = acquire_until_granted(store, "frz", pid);
    assert_eq!(lock.wait(SOON), 4, "lock reports the loss: {}", lock.stderr());
    assert!(
        lock.stderr().contains("could not be renewed in time"),
        "lock says why: {}",
        lock.stderr()
    );
    eprintln!("stall::lock: granted to the second acquirer after {attempts} attempts; the command was gone");
}

/// Two `arbiter watch` supervisors of one loop; the one running it has its store stalled.
/// The other takes the loop over, and its first round starts only once the stalled one's
/// round is dead: never two rounds of the loop at once. The stalled one records its round
/// as lost once its link works again.
fn watch_never_runs_two_rounds_at_once(store: &Store) {
    store.ok(&["store", "migrate"]);
    let mut stall = Stall::new(store);
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    std::fs::create_dir_all(dir.join("repo")).expect("a repo dir");
    let runs = dir.join("runs");
    let config = dir.join("arbiter.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[loops.frz]
repo = "repo"
every = "100ms"
command = ["sh", "-c", "trap '' TERM; echo \"$ARBITER_LEASE_TOKEN $$\" >> {runs}; exec sleep 100"]
timeout = "5m"
grace = "300ms"
"#,
            runs = runs.display()
        ),
    )
    .expect("the config");
    let watch = |url: &str, label: &str| {
        let mut cmd = store.cmd(&["watch", "--lease-ttl", "2s"]);
        cmd.arg("--config")
            .arg(&config)
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .env("ARBITER_STORE", url)
            .env("HOME", dir.join("home"))
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("ARBITER_CONFIG");
        Background::start(cmd, &dir, label)
    };
    let mut stalled = watch(&stall.url(store), "stalled");
    let first = eventually(SOON, "the first round to start", || {
        assert!(stalled.running(), "watch exited: {}", stalled.stderr());
        pids(&runs).first().copied()
    });
    let mut other = watch(&store.url, "other");

    stall.freeze();
    stall.until_the_store_could_grant("loop/frz");
    let mut overlaps = 0;
    let second = eventually(SOON, "the other supervisor's first round", || {
        let all = pids(&runs);
        overlaps = overlaps.max(all.iter().filter(|&&p| alive(p)).count());
        assert!(other.running(), "the other watch exited: {}", other.stderr());
        all.get(1).copied()
    });
    assert!(
        !alive(first),
        "the stalled supervisor's round (pid {first}) still runs when the other one's round (pid {second}) starts"
    );
    assert!(overlaps <= 1, "two rounds of one loop ran at once: {overlaps}");
    // Once its link works again, the stalled supervisor records its round as lost.
    stall.resume();
    let mut seen = Vec::new();
    let recorded = arbiter_testkit::poll_for(SOON, || {
        assert!(stalled.running(), "the stalled watch exited: {}", stalled.stderr());
        seen = store.sql_texts(
            "SELECT status || ' ' || COALESCE(reason, '') FROM loop_rounds WHERE loop = 'frz' AND round = 1",
        );
        seen.first().is_some_and(|s| s.starts_with("lost ")).then_some(())
    });
    assert!(
        recorded.is_some(),
        "round 1 recorded as lost: {seen:?}\n{}",
        stalled.stderr()
    );
    other.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(other.wait(SOON), 0, "a clean stop: {}", other.stderr());
    drop(stall);
    stalled.signal(nix::sys::signal::Signal::SIGTERM);
    stalled.wait(SOON);
    assert!(!alive(second), "the stopped supervisor's round is gone");
}

/// A grace that does not fit the TTL is refused before anything is opened: a command that
/// ignores TERM could still run when the lease goes to someone else.
#[test]
fn a_grace_longer_than_a_third_of_the_ttl_is_refused() {
    let store = Store::sqlite();
    for json in [false, true] {
        let mut args = vec!["lock", "x", "--ttl", "3s", "--grace", "2s", "--", "true"];
        if json {
            args.insert(0, "--json");
        }
        let out = store.run(&args);
        out.expect_code(2, "a grace longer than a third of the TTL");
        let message = if json {
            out.json()["message"].as_str().expect("a message").to_string()
        } else {
            out.stderr.clone()
        };
        for fragment in ["--grace 2s does not fit --ttl 3s", "at most a third of the TTL (1s)"] {
            assert!(message.contains(fragment), "{fragment:?} in {message:?}");
        }
    }
    assert!(!store.exists(), "nothing was created");
    store.ok(&["lock", "x", "--ttl", "3s", "--grace", "1s", "--", "true"]);
}
