//! Randomized multi-process histories, checked for linearizability.
//!
//! Several client processes (each a long-lived `bash` running [`DRIVER`]) run random plans
//! of `arbiter lease acquire/renew/release` (no waiting, a 10-minute TTL so nothing expires
//! during a run) on a few lease names, and compare-and-swap rounds (`kv get --json`, then
//! `kv put --if-version`) on a few keys — one `arbiter` process per operation. Each client
//! records every call (before it starts) and every return (after it ends) with the wall
//! clock in µs, so the history has real-time order. Meanwhile the test `kill -9`s some
//! clients — the whole process group, so the `arbiter` process it was running dies mid-
//! operation too — and starts replacements; on PostgreSQL it also crashes and restarts the
//! (private) server mid-run. It also **stalls** the store links of some clients at random
//! moments for a random while (up to 1.5 s), then resumes them: on PostgreSQL half the
//! clients reach the server through a [`StallProxy`] that is frozen (connections stay open,
//! no byte passes); on SQLite a connection of the test holds the write lock
//! (`BEGIN IMMEDIATE`) meanwhile. Operations in flight then wait, or fail with exit 1 or 6
//! (unknown outcome, like during a restart), and must still be linearizable.
//!
//! `lease acquire` records its parent, the client, as the holder: once the test has killed
//! (and reaped) a client, the leases it held may be taken over by anyone on this host at
//! once, and must be (a refusal after that is a violation); before, they must not. The
//! history of each lease name (with the clients' deaths) is checked against
//! [`LockModel`], each key's against [`RegisterModel`]. Operations cut off by a kill, or
//! (PostgreSQL only, overlapping the restart) failing with exit 1 or 6, have unknown
//! outcomes: they may have taken effect or not. Any other exit code is a failure too.
//!
//! A violation fails the test and saves the history (raw client logs and a readable
//! rendering per partition) under `target/tmp/faults/`, printing the path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::common::{Group, Rng, artifact_dir, long_runs, now_us, report};
use super::linearizability::{Model, Op, Verdict, check, render};
use super::models::{LockIn, LockModel, LockOut, LockState, MAX_CLIENTS, RegIn, RegOut, RegisterModel};
use super::postgres::PrivatePostgres;
use crate::support::{Store, exit_code, postgres_addr, wait_bounded};
use arbiter_testkit::net::StallProxy;

/// One client: runs its plan (`KIND NAME GUESS` per line) and appends to its history file
/// `C SEQ TIME KIND NAME ARGS…` before each operation and `R SEQ TIME CODE STDOUT` after
/// it (plus `E SEQ STDERR` for unexpected exit codes). `renew`/`release` use the token the
/// client holds, else the last one it had (stale), else the plan's guess.
const DRIVER: &str = r#"set -u
id=$1
A=$ARBITER
out_file=$3.out
err_file=$3.err
exec 3>>"$3" 4<"$2"
declare -A tok=() last=()
seq=0
out=""
pause=50
call() {
    seq=$((seq + 1))
    printf 'C %d %s %s\n' "$seq" "${EPOCHREALTIME/./}" "$*" >&3
}
finish() {
    local t=${EPOCHREALTIME/./} err=""
    out=""
    IFS= read -r out <"$out_file" || true
    printf 'R %d %s %d %s\n' "$seq" "$t" "$1" "$out" >&3
    case $1 in
    0 | 3 | 4 | 5) pause=50 ;;
    *)
        # The store is unavailable (a server restart): back off, 50 ms doubling to 1.6 s.
        IFS= read -r err <"$err_file" || true
        printf 'E %d %s\n' "$seq" "$err" >&3
        sleep "$((pause / 1000)).$(printf %03d $((pause % 1000)))"
        ((pause < 1600)) && pause=$((pause * 2))
        ;;
    esac
}
while read -r -u 4 kind name guess; do
    case $kind in
    acq)
        call acq "$name"
        "$A" lease acquire "$name" --ttl 10m --json </dev/null >"$out_file" 2>"$err_file"
        rc=$?
        finish $rc
        if ((rc == 0)) && [[ $out =~ \"token\":([0-9]+) ]]; then
            tok[$name]=${BASH_REMATCH[1]}
            last[$name]=${BASH_REMATCH[1]}
        fi
        ;;
    ren | rel)
        t=${tok[$name]:-${last[$name]:-$guess}}
        call "$kind" "$name" "$t"
        if [[ $kind == ren ]]; then
            "$A" lease renew "$name" --token "$t" </dev/null >"$out_file" 2>"$err_file"
        else
            "$A" lease release "$name" --token "$t" </dev/null >"$out_file" 2>"$err_file"
        fi
        rc=$?
        finish $rc
        if ((rc == 4)) || [[ $kind == rel && $rc == 0 ]]; then
            unset "tok[$name]"
        fi
        ;;
    get | cas)
        call get "$name"
        "$A" kv get "$name" --json </dev/null >"$out_file" 2>"$err_file"
        rc=$?
        finish $rc
        [[ $kind == cas ]] || continue
        if ((rc == 0)) && [[ $out =~ \"version\":([0-9]+) ]]; then
            v=${BASH_REMATCH[1]}
        elif ((rc == 5)); then
            v=0
        else
            continue
        fi
        call put "$name" "$v" "c${id}o$((seq + 1))"
        "$A" kv put "$name" "c${id}o${seq}" --if-version "$v" </dev/null >"$out_file" 2>"$err_file"
        finish $?
        ;;
    esac
done
exit 0
"#;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Params {
    rounds: usize,
    /// Clients running at once.
    clients: usize,
    /// Plan steps per client (a compare-and-swap step is two operations).
    steps: usize,
    kills: usize,
    restarts: usize,
    /// Stalls of the clients' store links (freeze, then resume).
    stalls: usize,
    leases: usize,
    keys: usize,
}

fn params(postgres: bool) -> Params {
    let restarts = usize::from(postgres);
    if long_runs() {
        Params {
            rounds: 5,
            clients: 8,
            steps: 60,
            kills: 4,
            restarts: 2 * restarts,
            stalls: 4,
            leases: 3,
            keys: 2,
        }
    } else {
        Params {
            rounds: 1,
            clients: 6,
            steps: 35,
            kills: 2,
            restarts,
            stalls: 2,
            leases: 3,
            keys: 2,
        }
    }
}

/// Search steps one partition may take. The memoized search needs about one step per
/// operation on these histories; this is far more, and still bounds time and memory.
const BUDGET: u64 = 1_000_000;
/// A whole round may take this long before the test gives up.
const ROUND_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn sqlite() {
    let p = params(false);
    let (mut rng, seed) = Rng::from_env();
    let mut total = Totals::default();
    let started = Instant::now();
    for round in 1..=p.rounds {
        let store = Store::sqlite();
        let label = format!("sqlite round {round}");
        total.add(run_round(&label, &store, None, p, &mut rng, seed));
    }
    total.report("sqlite", seed, started.elapsed());
}

#[test]
fn postgres() {
    let Some(mut server) = PrivatePostgres::start("faults::history::postgres") else {
        return;
    };
    let p = params(true);
    let (mut rng, seed) = Rng::from_env();
    let mut total = Totals::default();
    let started = Instant::now();
    for round in 1..=p.rounds {
        let store = Store::postgres_at(server.url(&format!("history_{round}")));
        let label = format!("postgres round {round}");
        total.add(run_round(&label, &store, Some(&mut server), p, &mut rng, seed));
    }
    total.report("postgres", seed, started.elapsed());
}

/// What a round ran, for the report.
#[derive(Debug, Default)]
struct Totals {
    rounds: usize,
    clients: usize,
    ops: usize,
    unknown: usize,
    kills: usize,
    kills_holding: usize,
    takeovers: usize,
    restarts: usize,
    /// The longest a crash and restart of the server took (µs).
    longest_restart: u64,
    stalls: usize,
    /// The longest stall of the clients' store links (µs).
    longest_stall: u64,
    partitions: usize,
    search_steps: u64,
    outcomes: BTreeMap<String, usize>,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.rounds += other.rounds;
        self.clients += other.clients;
        self.ops += other.ops;
        self.unknown += other.unknown;
        self.kills += other.kills;
        self.kills_holding += other.kills_holding;
        self.takeovers += other.takeovers;
        self.restarts += other.restarts;
        self.longest_restart = self.longest_restart.max(other.longest_restart);
        self.stalls += other.stalls;
        self.longest_stall = self.longest_stall.max(other.longest_stall);
        self.partitions += other.partitions;
        self.search_steps += other.search_steps;
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }

    fn report(&self, backend: &str, seed: u64, took: Duration) {
        let outcomes: Vec<String> = self.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        report(&format!(
            "faults::history {backend}: linearizable — {} rounds, {} client processes, {} operations \
             ({} with unknown outcome), {} kill -9 ({} of lease holders), {} takeovers of dead holders, \
             {} server crash-restarts (longest {} ms), {} store-link stalls (longest {} ms), {} partitions checked \
             in {} search steps, {:.1}s, seed {seed}\n  outcomes: {}",
            self.rounds,
            self.clients,
            self.ops,
            self.unknown,
            self.kills,
            self.kills_holding,
            self.takeovers,
            self.restarts,
            self.longest_restart / 1000,
            self.stalls,
            self.longest_stall / 1000,
            self.partitions,
            self.search_steps,
            took.as_secs_f64(),
            outcomes.join(", ")
        ));
    }
}

struct Client {
    id: u32,
    pid: u32,
    group: Option<Group>,
    history: PathBuf,
    /// (earliest, latest) time of its death: the kill's send and reap, or its last
    /// recorded step (filled in later) and the reap.
    death: Option<(u64, u64)>,
    killed: bool,
    spawned: u64,
}

enum Event {
    Kill,
    Restart,
    Stall,
}

/// How the test stalls clients' store links: a proxy half the PostgreSQL clients go through,
/// or (SQLite) the store file, whose write lock the test takes.
enum Staller {
    Proxy(StallProxy),
    Sqlite(PathBuf),
}

impl Staller {
    fn new(store: &Store) -> Staller {
        match store.sqlite_path() {
            Some(path) => Staller::Sqlite(path.to_path_buf()),
            None => Staller::Proxy(StallProxy::start(postgres_addr(&store.url))),
        }
    }

    /// The store URL of client `id`: every other PostgreSQL client goes through the proxy.
    fn url(&self, store: &Store, id: u32) -> String {
        match self {
            Staller::Proxy(proxy) if id.is_multiple_of(2) => proxy.postgres_url(&store.url),
            _ => store.url.clone(),
        }
    }

    /// Stalls the links for `pause`, then resumes them.
    fn stall(&self, pause: Duration) {
        match self {
            Staller::Proxy(proxy) => {
                proxy.freeze();
                std::thread::sleep(pause);
                proxy.resume();
            }
            Staller::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("open the store file");
                conn.busy_timeout(Duration::from_secs(30)).expect("a busy timeout");
                conn.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
                std::thread::sleep(pause);
                conn.execute_batch("ROLLBACK").expect("let the write lock go");
            }
        }
    }
}

fn write_plan(path: &Path, p: Params, rng: &mut Rng) {
    let mut plan = String::new();
    for _ in 0..p.steps {
        let lease = format!("L{}", rng.below(p.leases as u64));
        let key = format!("K{}", rng.below(p.keys as u64));
        let guess = rng.between(1, 6);
        let line = match rng.below(100) {
            0..35 => format!("acq {lease} -"),
            35..50 => format!("ren {lease} {guess}"),
            50..65 => format!("rel {lease} {guess}"),
            65..90 => format!("cas {key} -"),
            _ => format!("get {key} -"),
        };
        plan.push_str(&line);
        plan.push('\n');
    }
    std::fs::write(path, plan).expect("write a plan");
}

fn spawn_client(id: u32, dir: &Path, store: &Store, staller: &Staller, p: Params, rng: &mut Rng) -> Client {
    assert!(id < MAX_CLIENTS, "at most {MAX_CLIENTS} clients per history");
    let plan = dir.join(format!("c{id}.plan"));
    let history = dir.join(format!("c{id}.hist"));
    write_plan(&plan, p, rng);
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("driver.sh"))
        .arg(id.to_string())
        .arg(&plan)
        .arg(&history)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("c{id}.stderr"))).expect("a stderr file"))
        // `$EPOCHREALTIME` with a `.`, whatever the caller's locale.
        .env("LC_ALL", "C");
    store.env(&mut cmd).env("ARBITER_STORE", staller.url(store, id));
    let spawned = now_us();
    let group = Group::spawn(&mut cmd);
    Client {
        id,
        pid: group.pid(),
        group: Some(group),
        history,
        death: None,
        killed: false,
        spawned,
    }
}

/// One operation as a client recorded it.
#[derive(Debug, Clone, Default)]
struct Raw {
    client: u32,
    kind: String,
    name: String,
    args: Vec<String>,
    call: u64,
    ret: Option<u64>,
    code: Option<i32>,
    out: String,
    err: String,
}

/// Reads a client's history; an unfinished last line (the client was killed while
/// writing it) is ignored, so a half-written return counts as no return.
fn parse_history(client: u32, path: &Path) -> Vec<Raw> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut ops: BTreeMap<u64, Raw> = BTreeMap::new();
    for line in complete.lines() {
        let mut fields = line.splitn(4, ' ');
        let tag = fields.next().unwrap_or_default();
        let seq: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            panic!("bad history line in {}: {line:?}", path.display());
        });
        match tag {
            "C" => {
                let call = fields.next().and_then(|s| s.parse().ok()).expect("a call time");
                let rest: Vec<String> = fields.next().unwrap_or_default().split(' ').map(String::from).collect();
                ops.insert(
                    seq,
                    Raw {
                        client,
                        kind: rest[0].clone(),
                        name: rest.get(1).cloned().unwrap_or_default(),
                        args: rest[2.min(rest.len())..].to_vec(),
                        call,
                        ..Raw::default()
                    },
                );
            }
            "R" => {
                let op = ops.get_mut(&seq).expect("a return after its call");
                op.ret = Some(fields.next().and_then(|s| s.parse().ok()).expect("a return time"));
                let rest = fields.next().unwrap_or_default();
                let (code, out) = rest.split_once(' ').unwrap_or((rest, ""));
                op.code = Some(code.parse().expect("an exit code"));
                op.out = out.to_string();
            }
            "E" => {
                let rest: Vec<&str> = fields.collect();
                ops.get_mut(&seq).expect("an error after its call").err = rest.join(" ");
            }
            other => panic!("bad history line tag {other:?} in {}", path.display()),
        }
    }
    ops.into_values().collect()
}

/// Which leases a client holds, by its own history (to pick lease holders as victims).
fn holds_a_lease(raws: &[Raw]) -> bool {
    let mut held: BTreeMap<&str, bool> = BTreeMap::new();
    for op in raws {
        match (op.kind.as_str(), op.code) {
            ("acq", Some(0)) => {
                held.insert(&op.name, true);
            }
            ("rel", Some(0 | 4)) | ("ren", Some(4)) => {
                held.insert(&op.name, false);
            }
            _ => {}
        }
    }
    held.values().any(|&h| h)
}

fn returned_ops(clients: &[Client]) -> usize {
    clients
        .iter()
        .map(|c| {
            std::fs::read_to_string(&c.history)
                .map(|text| text.lines().filter(|l| l.starts_with("R ")).count())
                .unwrap_or(0)
        })
        .sum()
}

/// How many grants in a linearization took the lease over from a dead holder.
fn takeovers(ops: &[Op<LockIn, LockOut>], order: &[usize], states: &[LockState]) -> usize {
    let mut before = LockModel.init();
    let mut count = 0;
    for (&i, after) in order.iter().zip(states) {
        if matches!(ops[i].input, LockIn::Acquire { .. }) && before.holder.is_some() && after != &before {
            count += 1;
        }
        before = after.clone();
    }
    count
}

fn run_round(
    label: &str,
    store: &Store,
    mut server: Option<&mut PrivatePostgres>,
    p: Params,
    rng: &mut Rng,
    seed: u64,
) -> Totals {
    let work = tempfile::Builder::new()
        .prefix("arbiter-faults-history-")
        .tempdir()
        .expect("a temp dir");
    let dir = work.path();
    std::fs::write(dir.join("driver.sh"), DRIVER).expect("write the driver");
    store.ok(&["store", "migrate"]);

    let staller = Staller::new(store);
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..p.clients {
        let id = clients.len() as u32;
        clients.push(spawn_client(id, dir, store, &staller, p, rng));
    }
    // Faults at evenly spaced points of the run, in random order.
    let mut events: Vec<Event> = (0..p.kills)
        .map(|_| Event::Kill)
        .chain((0..p.restarts).map(|_| Event::Restart))
        .chain((0..p.stalls).map(|_| Event::Stall))
        .collect();
    for i in (1..events.len()).rev() {
        events.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let planned_ops = p.clients * p.steps;
    let thresholds: Vec<usize> = (1..=events.len())
        .map(|k| planned_ops * (k * 3) / (4 * (events.len() + 1)) + planned_ops / 10)
        .collect();
    let mut next_event = 0;
    let mut restart_windows: Vec<(u64, u64)> = Vec::new();
    let mut stall_windows: Vec<(u64, u64)> = Vec::new();
    let mut kills_holding = 0;

    let deadline = Instant::now() + ROUND_LIMIT;
    loop {
        let mut running = 0;
        for client in clients.iter_mut().filter(|c| c.group.is_some()) {
            let group = client.group.as_mut().expect("running");
            match group.child.try_wait().expect("waitpid works") {
                Some(status) => {
                    let reaped = now_us();
                    let code = exit_code(status);
                    let stderr = std::fs::read_to_string(dir.join(format!("c{}.stderr", client.id)));
                    assert_eq!(code, 0, "client {} (driver) failed: {stderr:?}", client.id);
                    client.death = Some((0, reaped));
                    client.group = None;
                }
                None => running += 1,
            }
        }
        if running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: the run did not finish within {ROUND_LIMIT:?}"
        );
        if next_event < events.len() && returned_ops(&clients) >= thresholds[next_event] {
            match events[next_event] {
                Event::Kill => {
                    let live: Vec<usize> = (0..clients.len()).filter(|&i| clients[i].group.is_some()).collect();
                    let holding: Vec<usize> = live
                        .iter()
                        .copied()
                        .filter(|&i| holds_a_lease(&parse_history(clients[i].id, &clients[i].history)))
                        .collect();
                    let pool = if holding.is_empty() { &live } else { &holding };
                    let victim = pool[rng.below(pool.len() as u64) as usize];
                    kills_holding += usize::from(!holding.is_empty());
                    let client = &mut clients[victim];
                    let mut group = client.group.take().expect("a running client");
                    let sent = now_us();
                    group.signal(Signal::SIGKILL);
                    let status =
                        wait_bounded(&mut group.child, Duration::from_secs(30)).expect("a killed client exits");
                    let reaped = now_us();
                    assert_eq!(exit_code(status), 137, "client {} was killed", client.id);
                    client.death = Some((sent, reaped));
                    client.killed = true;
                    drop(group);
                    let id = clients.len() as u32;
                    clients.push(spawn_client(id, dir, store, &staller, p, rng));
                }
                Event::Restart => {
                    let server = server.as_deref_mut().expect("restarts only with a private server");
                    let begun = now_us();
                    server.crash_restart();
                    restart_windows.push((begun, now_us()));
                }
                Event::Stall => {
                    let begun = now_us();
                    staller.stall(Duration::from_millis(rng.between(200, 1500)));
                    stall_windows.push((begun, now_us()));
                }
            }
            next_event += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        next_event,
        events.len(),
        "{label}: every fault was injected before the clients finished"
    );

    // Build the history.
    let mut raws: Vec<Raw> = Vec::new();
    for client in &mut clients {
        let mine = parse_history(client.id, &client.history);
        if !client.killed {
            // Exited by itself after its last step.
            let last = mine
                .iter()
                .map(|op| op.ret.unwrap_or(op.call))
                .max()
                .unwrap_or(client.spawned);
            let (_, reaped) = client.death.expect("a finished client has a reap time");
            client.death = Some((last, reaped));
        }
        raws.extend(mine);
    }
    let ended: Vec<Ended> = clients
        .iter()
        .map(|c| Ended {
            id: c.id,
            pid: c.pid,
            death: c.death.expect("every client ended"),
        })
        .collect();
    let Checked {
        mut totals,
        failures,
        anomalies,
        values,
    } = check_round(&ended, &raws, &restart_windows, &stall_windows);
    totals.kills = clients.iter().filter(|c| c.killed).count();
    totals.kills_holding = kills_holding;
    if !failures.is_empty() || !anomalies.is_empty() {
        let saved = artifact_dir(&format!("history-{}", label.replace(' ', "-")));
        for entry in std::fs::read_dir(dir).expect("the work dir").flatten() {
            let _ = std::fs::copy(entry.path(), saved.join(entry.file_name()));
        }
        let mut summary = format!("{label}, seed {seed}\nvalues: {values:?}\n");
        for anomaly in &anomalies {
            summary.push_str(anomaly);
            summary.push('\n');
        }
        for (what, text) in &failures {
            let file = saved.join(format!("{}.txt", what.replace(' ', "-")));
            std::fs::write(&file, text).expect("save a history");
            summary.push_str(&format!("NOT LINEARIZABLE: {what}: {}\n", file.display()));
        }
        std::fs::write(saved.join("summary.txt"), &summary).expect("save the summary");
        report(&format!(
            "faults::history {label}: FAILED; history saved in {}",
            saved.display()
        ));
        panic!(
            "{label}: {} partitions not linearizable, {} unexpected results; history saved in {}\n{summary}",
            failures.len(),
            anomalies.len(),
            saved.display()
        );
    }
    totals
}

/// A client once it has ended: its pid (the holder its acquires record) and when it died.
struct Ended {
    id: u32,
    pid: u32,
    /// (earliest, latest): the kill's send and reap, or its last step and the reap.
    death: (u64, u64),
}

/// What checking a round found.
struct Checked {
    totals: Totals,
    /// (partition, rendered history) of each partition that is not linearizable.
    failures: Vec<(String, String)>,
    /// Results no model explains as a success or a documented failure.
    anomalies: Vec<String>,
    /// The values written, by number.
    values: BTreeMap<String, u32>,
}

/// Turns the clients' records into one history per lease name (with the clients' deaths)
/// and per key, and checks each.
/// `restart_windows` and `stall_windows`: when the server was down and when the clients'
/// links were stalled; an operation overlapping one that fails with exit 1 or 6 has an
/// unknown outcome.
fn check_round(
    clients: &[Ended],
    raws: &[Raw],
    restart_windows: &[(u64, u64)],
    stall_windows: &[(u64, u64)],
) -> Checked {
    let pid_of: BTreeMap<u32, u32> = clients.iter().map(|c| (c.id, c.pid)).collect();
    let mut totals = Totals {
        rounds: 1,
        clients: clients.len(),
        ops: raws.len(),
        restarts: restart_windows.len(),
        longest_restart: restart_windows.iter().map(|(a, b)| b - a).max().unwrap_or(0),
        stalls: stall_windows.len(),
        longest_stall: stall_windows.iter().map(|(a, b)| b - a).max().unwrap_or(0),
        ..Totals::default()
    };

    let mut anomalies: Vec<String> = Vec::new();
    let mut locks: BTreeMap<String, Vec<Op<LockIn, LockOut>>> = BTreeMap::new();
    let mut registers: BTreeMap<String, Vec<Op<RegIn, RegOut>>> = BTreeMap::new();
    let mut values: BTreeMap<String, u32> = BTreeMap::new();
    let mut value_id = |text: &str| {
        let next = values.len() as u32;
        *values.entry(text.to_string()).or_insert(next)
    };
    for raw in raws {
        // An unknown outcome: cut off by a kill, or failing because the server went away
        // under it (PostgreSQL) or its link stalled.
        let during_restart = raw.ret.is_some_and(|ret| {
            restart_windows
                .iter()
                .chain(stall_windows)
                .any(|&(begun, ended)| raw.call <= ended && ret >= begun)
        });
        let unknown = match raw.code {
            None => true,
            Some(1 | 6) if during_restart => true,
            _ => false,
        };
        if unknown {
            totals.unknown += 1;
        }
        let unexpected = |anomalies: &mut Vec<String>| anomalies.push(format!("unexpected result: {raw:?}"));
        let mut outcome = |what: &str| {
            *totals.outcomes.entry(format!("{} {what}", raw.kind)).or_default() += 1;
        };
        if unknown {
            outcome("unknown");
        }
        let ret = if raw.code.is_none() { None } else { raw.ret };
        match raw.kind.as_str() {
            "acq" | "ren" | "rel" => {
                let input = match raw.kind.as_str() {
                    "acq" => LockIn::Acquire { client: raw.client },
                    kind => {
                        let token = raw.args[0].parse().expect("a token");
                        if kind == "ren" {
                            LockIn::Renew { token }
                        } else {
                            LockIn::Release { token }
                        }
                    }
                };
                let output = match (raw.kind.as_str(), raw.code) {
                    _ if unknown => None,
                    ("acq", Some(0)) => {
                        let lease: serde_json::Value = serde_json::from_str(&raw.out).expect("a lease as JSON");
                        let holder = lease["holder"]["pid"].as_u64().map(|p| p as u32);
                        assert_eq!(
                            holder,
                            pid_of.get(&raw.client).copied(),
                            "lease acquire records the client process (its parent) as the holder: {raw:?}"
                        );
                        outcome("granted");
                        Some(LockOut::Granted(lease["token"].as_i64().expect("a token")))
                    }
                    ("acq", Some(3)) => {
                        outcome("held");
                        Some(LockOut::Held)
                    }
                    ("ren" | "rel", Some(0)) => {
                        outcome("ok");
                        Some(LockOut::Ok)
                    }
                    ("ren" | "rel", Some(4)) => {
                        outcome("lost");
                        Some(LockOut::Lost)
                    }
                    _ => {
                        unexpected(&mut anomalies);
                        None
                    }
                };
                locks.entry(raw.name.clone()).or_default().push(Op {
                    client: raw.client,
                    call: raw.call,
                    ret,
                    input,
                    output,
                });
            }
            "get" | "put" => {
                let input = if raw.kind == "get" {
                    RegIn::Get
                } else {
                    RegIn::Put {
                        if_version: raw.args[0].parse().expect("a version"),
                        value: value_id(&raw.args[1]),
                    }
                };
                let output = match (raw.kind.as_str(), raw.code) {
                    _ if unknown => None,
                    ("get", Some(0)) => {
                        let kv: serde_json::Value = serde_json::from_str(&raw.out).expect("a key as JSON");
                        outcome("found");
                        Some(RegOut::Found {
                            value: value_id(kv["value"].as_str().expect("a value")),
                            version: kv["version"].as_i64().expect("a version"),
                        })
                    }
                    ("get", Some(5)) => {
                        outcome("missing");
                        Some(RegOut::Missing)
                    }
                    ("put", Some(0)) => {
                        outcome("written");
                        Some(RegOut::Written(raw.out.trim().parse().expect("a version")))
                    }
                    ("put", Some(3)) => {
                        outcome("conflict");
                        Some(RegOut::Conflict)
                    }
                    _ => {
                        unexpected(&mut anomalies);
                        None
                    }
                };
                registers.entry(raw.name.clone()).or_default().push(Op {
                    client: raw.client,
                    call: raw.call,
                    ret,
                    input,
                    output,
                });
            }
            other => panic!("unknown operation kind {other:?}"),
        }
    }
    let deaths: Vec<Op<LockIn, LockOut>> = clients
        .iter()
        .map(|c| {
            let (earliest, latest) = c.death;
            Op {
                client: c.id,
                call: earliest,
                ret: Some(latest),
                input: LockIn::Death { client: c.id },
                output: Some(LockOut::Ok),
            }
        })
        .collect();

    let mut failures: Vec<(String, String)> = Vec::new();
    for (name, mut ops) in locks {
        ops.extend(deaths.iter().cloned());
        let verdict = check(&LockModel, &ops, BUDGET);
        totals.partitions += 1;
        totals.search_steps += verdict.steps();
        match &verdict {
            Verdict::Linearizable { order, states, .. } => totals.takeovers += takeovers(&ops, order, states),
            _ => failures.push((format!("lease {name}"), render(&ops, &verdict))),
        }
    }
    for (name, ops) in registers {
        let verdict = check(&RegisterModel, &ops, BUDGET);
        totals.partitions += 1;
        totals.search_steps += verdict.steps();
        if !matches!(verdict, Verdict::Linearizable { .. }) {
            failures.push((format!("key {name}"), render(&ops, &verdict)));
        }
    }
    Checked {
        totals,
        failures,
        anomalies,
        values,
    }
}

/// The checking half on hand-written records: what it must catch, and what it must accept.
#[cfg(test)]
mod tests {
    use super::*;

    fn raw(client: u32, kind: &str, name: &str, args: &[&str], call: u64, ret: Option<u64>, code: i32) -> Raw {
        Raw {
            client,
            kind: kind.to_string(),
            name: name.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            call,
            ret,
            code: ret.map(|_| code),
            ..Raw::default()
        }
    }

    fn granted(client: u32, call: u64, ret: u64, token: i64) -> Raw {
        Raw {
            out: format!(r#"{{"token":{token},"holder":{{"pid":{}}}}}"#, 1000 + client),
            ..raw(client, "acq", "L0", &[], call, Some(ret), 0)
        }
    }

    fn clients(deaths: &[(u64, u64)]) -> Vec<Ended> {
        (0..deaths.len() as u32)
            .map(|id| Ended {
                id,
                pid: 1000 + id,
                death: deaths[id as usize],
            })
            .collect()
    }

    #[test]
    fn a_takeover_before_the_holder_died_is_caught() {
        // Client 1 is granted L0 while client 0, which holds it, is alive (it dies later).
        let raws = [granted(0, 10, 20, 1), granted(1, 30, 40, 2)];
        let checked = check_round(&clients(&[(50, 60), (70, 80)]), &raws, &[], &[]);
        assert_eq!(checked.failures.len(), 1, "{:?}", checked.failures);
        assert_eq!(checked.failures[0].0, "lease L0");
        assert!(
            checked.failures[0].1.contains("Granted(2)"),
            "{}",
            checked.failures[0].1
        );
        // After client 0's death (killed at 25, reaped at 28) the same grant is a takeover.
        let checked = check_round(&clients(&[(25, 28), (70, 80)]), &raws, &[], &[]);
        assert!(checked.failures.is_empty(), "{:?}", checked.failures);
        assert_eq!(checked.totals.takeovers, 1);
    }

    #[test]
    fn a_lost_write_and_an_unexplained_exit_code_are_caught() {
        let raws = [
            raw(0, "put", "K0", &["0", "c0o1"], 10, Some(20), 0),
            Raw {
                out: r#"{"key":"K0","value":"c0o1","version":1}"#.to_string(),
                ..raw(1, "get", "K0", &[], 30, Some(40), 0)
            },
            // A compare-and-swap on version 1 that is refused although the key is at 1 ...
            raw(1, "put", "K0", &["1", "c1o2"], 50, Some(60), 3),
            // ... and a renew failing with "store unavailable" outside any server restart.
            raw(0, "ren", "L0", &["1"], 70, Some(80), 6),
        ];
        let mut raws = raws.to_vec();
        raws[0].out = "1".to_string();
        let checked = check_round(&clients(&[(90, 95), (90, 95)]), &raws, &[], &[]);
        assert_eq!(
            checked.failures.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            ["key K0"]
        );
        assert_eq!(checked.anomalies.len(), 1, "{:?}", checked.anomalies);
        // The same exit code while the server restarted is an unknown outcome, not an anomaly.
        let checked = check_round(&clients(&[(90, 95), (90, 95)]), &raws[3..], &[(75, 85)], &[]);
        assert!(checked.anomalies.is_empty() && checked.failures.is_empty());
        assert_eq!(checked.totals.unknown, 1);
        // So is it while the store link stalled.
        let checked = check_round(&clients(&[(90, 95), (90, 95)]), &raws[3..], &[], &[(75, 85)]);
        assert!(checked.anomalies.is_empty() && checked.failures.is_empty());
        assert_eq!((checked.totals.unknown, checked.totals.stalls), (1, 1));
    }

    #[test]
    fn a_cut_line_is_no_return() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("c0.hist");
        std::fs::write(
            &path,
            "C 1 100 acq L0\nR 1 200 0 {\"token\":1}\nC 2 300 rel L0 1\nR 2 40",
        )
        .expect("write");
        let ops = parse_history(0, &path);
        assert_eq!(ops.len(), 2);
        assert_eq!((ops[0].ret, ops[0].code), (Some(200), Some(0)));
        assert_eq!((ops[1].kind.as_str(), ops[1].ret, ops[1].code), ("rel", None, None));
        assert_eq!(ops[1].args, ["1"]);
    }
}
