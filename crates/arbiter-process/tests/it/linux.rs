use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use arbiter_core::ErrorKind;
use arbiter_process::procfs;
use arbiter_process::{
    GuardedChild, Liveness, Spawn, boot_id, current_pid, exit_code, group_alive, guard_main, holder_for, host_name,
    liveness, parent_pid, process_start_time, run_guard, spawn_guarded,
};
use arbiter_testkit::{poll_for, poll_for_async};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `spawn_guarded` with this process's environment (plus `env`) and streams.
fn guarded(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    guard: &std::path::Path,
) -> arbiter_core::Result<GuardedChild> {
    spawn_guarded(
        &Spawn {
            argv: argv.to_vec(),
            env: env.to_vec(),
            ..Spawn::default()
        },
        guard,
    )
}

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    ("identity_of_this_process", identity_of_this_process),
    ("liveness_of_this_process", liveness_of_this_process),
    ("exited_process_is_dead", exited_process_is_dead),
    ("zombie_holder_is_dead", zombie_holder_is_dead),
    (
        "live_group_keeps_a_dead_holder_alive",
        live_group_keeps_a_dead_holder_alive,
    ),
    ("guard_arguments", guard_arguments),
    ("exit_code_passes_through", exit_code_passes_through),
    ("command_not_found_is_127", command_not_found_is_127),
    ("env_reaches_the_command", env_reaches_the_command),
    ("dropping_the_child_kills_the_tree", dropping_the_child_kills_the_tree),
    ("owner_killed_kills_the_tree", owner_killed_kills_the_tree),
    (
        "killing_the_guard_kills_the_command",
        killing_the_guard_kills_the_command,
    ),
    ("terminate_is_graceful", terminate_is_graceful),
    (
        "terminate_kills_what_ignores_sigterm",
        terminate_kills_what_ignores_sigterm,
    ),
    (
        "kill_group_leftovers_empties_the_group",
        kill_group_leftovers_empties_the_group,
    ),
];

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(code) = guard_main(&args) {
        std::process::exit(code);
    }
    if args.get(1).is_some_and(|a| a == "__owner") {
        owner();
    }
    let args: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let start = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(test)).is_ok();
        println!(
            "test {name} ... {} ({:.2?})",
            if ok { "ok" } else { "FAILED" },
            start.elapsed()
        );
        if !ok {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed\n");
        ExitCode::SUCCESS
    } else {
        println!("\nfailures: {}", failed.join(", "));
        println!("test result: FAILED. {passed} passed; {} failed\n", failed.len());
        ExitCode::FAILURE
    }
}

/// `__owner` mode: spawns a guarded command whose group has two `sleep 300`, prints the
/// group id, and waits (bounded: a test kills it long before).
fn owner() -> ! {
    rt().block_on(async {
        let child = guarded(&os(&["sh", "-c", "sleep 300 & sleep 300"]), &[], &me()).unwrap();
        let mut out = std::io::stdout();
        writeln!(out, "{}", child.pgid().unwrap()).unwrap();
        out.flush().unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(child);
    });
    std::process::exit(0)
}

// ---------------------------------------------------------------------------------------
// helpers

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn me() -> PathBuf {
    std::env::current_exe().unwrap()
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// The command names of the members of group `pgid` that are not zombies.
fn live_members(pgid: u32) -> Vec<String> {
    procfs::group_members(pgid).into_iter().map(|p| p.comm).collect()
}

fn count_sleeps(pgid: u32) -> usize {
    live_members(pgid).iter().filter(|c| *c == "sleep").count()
}

/// Whether `cond` comes to hold within `limit` (see `arbiter_testkit::wait`).
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll_for_async(limit, || std::future::ready(cond().then_some(())))
        .await
        .is_some()
}

fn eventually_sync(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll_for(limit, || cond().then_some(())).is_some()
}

const FIVE_S: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// identity and liveness

fn identity_of_this_process() {
    assert!(!host_name().is_empty());
    let boot = boot_id();
    assert_eq!(boot.len(), 36, "boot id {boot:?}");
    assert_eq!(current_pid(), std::process::id());
    assert_eq!(parent_pid(), Some(nix::unistd::getppid().as_raw() as u32));
    let h = holder_for(current_pid(), "agent-1").unwrap();
    assert_eq!(h.host, host_name());
    assert_eq!(h.boot_id, boot);
    assert_eq!(h.pid, current_pid());
    assert_eq!(Some(h.start_time), process_start_time(current_pid()));
    assert_eq!(h.agent, "agent-1");
    assert_eq!(h.pgid, None);
}

fn liveness_of_this_process() {
    let h = holder_for(current_pid(), "a").unwrap();
    assert_eq!(liveness(&h), Liveness::Alive);

    let reused = arbiter_core::lease::Holder {
        start_time: h.start_time + 1,
        ..h.clone()
    };
    assert_eq!(liveness(&reused), Liveness::Dead, "a reused pid is not the holder");

    let elsewhere = arbiter_core::lease::Holder {
        host: format!("{}-elsewhere", h.host),
        ..h.clone()
    };
    assert_eq!(liveness(&elsewhere), Liveness::Unknown);

    let rebooted = arbiter_core::lease::Holder {
        boot_id: "00000000-0000-0000-0000-000000000000".into(),
        ..h.clone()
    };
    assert_eq!(liveness(&rebooted), Liveness::Dead, "same host, another boot");

    let unknown_boot = arbiter_core::lease::Holder {
        boot_id: String::new(),
        ..h
    };
    assert_eq!(liveness(&unknown_boot), Liveness::Alive);
}

fn exited_process_is_dead() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Not reaped yet, so it still exists (running or a zombie).
    let start = process_start_time(pid).unwrap();
    child.wait().unwrap();
    let h = arbiter_core::lease::Holder {
        host: host_name(),
        boot_id: boot_id(),
        pid,
        start_time: start,
        agent: "a".into(),
        pgid: None,
    };
    assert_eq!(liveness(&h), Liveness::Dead);
    assert_eq!(process_start_time(pid), None);
    let err = holder_for(pid, "a").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
}

fn zombie_holder_is_dead() {
    let child = Reaped(Command::new("true").spawn().unwrap());
    let pid = child.0.id();
    let start = process_start_time(pid).unwrap();
    let h = arbiter_core::lease::Holder {
        host: host_name(),
        boot_id: boot_id(),
        pid,
        start_time: start,
        agent: "a".into(),
        pgid: None,
    };
    // Until reaped, `true` stays a zombie: it exists but runs no more.
    assert!(eventually_sync(FIVE_S, || liveness(&h) == Liveness::Dead));
    assert_eq!(process_start_time(pid), Some(start), "a zombie still exists");
    drop(child);
}

fn live_group_keeps_a_dead_holder_alive() {
    use std::os::unix::process::CommandExt;

    let mut sleep = Reaped(Command::new("sleep").arg("30").process_group(0).spawn().unwrap());
    let pgid = sleep.0.id();
    assert!(group_alive(pgid));
    let h = arbiter_core::lease::Holder {
        host: host_name(),
        boot_id: boot_id(),
        pid: dead_pid(),
        start_time: 1,
        agent: "a".into(),
        pgid: Some(pgid),
    };
    assert_eq!(liveness(&h), Liveness::Alive, "its command's group still has a member");

    sleep.0.kill().unwrap();
    sleep.0.wait().unwrap();
    assert!(!group_alive(pgid));
    assert_eq!(liveness(&h), Liveness::Dead);

    // Never "alive", whatever a stored holder says: 0 and 1 are not groups one may probe.
    assert!(!group_alive(0));
    assert!(!group_alive(1));
}

// ---------------------------------------------------------------------------------------
// guarded commands

fn guard_arguments() {
    assert_eq!(guard_main(&os(&["arbiter", "lock", "x"])), None);
    assert_eq!(guard_main(&os(&["arbiter"])), None);
    assert_eq!(
        guard_main(&os(&["arbiter", "__guard", "nope", "--", "true"])),
        Some(126)
    );
    assert_eq!(guard_main(&os(&["arbiter", "__guard", "5", "true"])), Some(126));
    // Refused before anything is spawned: not an open descriptor, or a standard stream.
    assert_eq!(run_guard(-1, &os(&["true"])), 126);
    assert_eq!(run_guard(1_000_000, &os(&["true"])), 126);
    assert_eq!(run_guard(2, &os(&["true"])), 126);
    assert_eq!(run_guard(5, &[]), 126);
}

fn exit_code_passes_through() {
    rt().block_on(async {
        let mut child = guarded(&os(&["sh", "-c", "exit 7"]), &[], &me()).unwrap();
        assert_eq!(child.pgid(), Some(child.pid()));
        let status = child.wait().await.unwrap();
        assert_eq!(exit_code(&status), 7);
        // Waiting again gives the same status.
        assert_eq!(exit_code(&child.wait().await.unwrap()), 7);

        let mut child = guarded(&os(&["true"]), &[], &me()).unwrap();
        assert_eq!(exit_code(&child.wait().await.unwrap()), 0);

        // Killed by a signal: 128 + signal, like a shell.
        let mut child = guarded(&os(&["sh", "-c", "kill -9 $$"]), &[], &me()).unwrap();
        assert_eq!(exit_code(&child.wait().await.unwrap()), 137);
    });
}

fn command_not_found_is_127() {
    rt().block_on(async {
        let argv = os(&["/nonexistent/arbiter-test-command"]);
        let mut child = guarded(&argv, &[], &me()).unwrap();
        assert_eq!(exit_code(&child.wait().await.unwrap()), 127);

        let err = guarded(&[], &[], &me()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadInput);

        let err = guarded(&os(&["true"]), &[], "/nonexistent/guard".as_ref()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
    });
}

fn env_reaches_the_command() {
    rt().block_on(async {
        let env = [(OsString::from("ARBITER_TEST_CODE"), OsString::from("42"))];
        // `sh` is found through the inherited PATH; the added variable is there too.
        let argv = os(&["sh", "-c", "exit \"$ARBITER_TEST_CODE\""]);
        let mut child = guarded(&argv, &env, &me()).unwrap();
        assert_eq!(exit_code(&child.wait().await.unwrap()), 42);
    });
}

fn dropping_the_child_kills_the_tree() {
    rt().block_on(async {
        let argv = os(&["sh", "-c", "sleep 300 & sleep 300"]);
        let child = guarded(&argv, &[], &me()).unwrap();
        let pgid = child.pgid().unwrap();
        assert!(
            eventually(FIVE_S, || count_sleeps(pgid) == 2).await,
            "{:?}",
            live_members(pgid)
        );
        drop(child);
        assert!(
            eventually(FIVE_S, || !group_alive(pgid)).await,
            "{:?}",
            live_members(pgid)
        );
        assert_eq!(live_members(pgid), Vec::<String>::new());
    });
}

fn owner_killed_kills_the_tree() {
    let mut owner = Reaped(
        Command::new(me())
            .arg("__owner")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(owner.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pgid: u32 = line.trim().parse().unwrap_or_else(|_| panic!("owner printed {line:?}"));
    assert!(
        eventually_sync(FIVE_S, || count_sleeps(pgid) == 2),
        "{:?}",
        live_members(pgid)
    );

    kill(Pid::from_raw(owner.0.id() as i32), Signal::SIGKILL).unwrap();
    owner.0.wait().unwrap();
    assert!(
        eventually_sync(FIVE_S, || !group_alive(pgid)),
        "{:?}",
        live_members(pgid)
    );
    assert_eq!(live_members(pgid), Vec::<String>::new());
}

fn killing_the_guard_kills_the_command() {
    rt().block_on(async {
        let mut child = guarded(&os(&["sleep", "300"]), &[], &me()).unwrap();
        let pgid = child.pgid().unwrap();
        assert!(eventually(FIVE_S, || count_sleeps(pgid) == 1).await);
        // Only the guard: the command gets its parent-death signal (Linux).
        kill(Pid::from_raw(child.pid() as i32), Signal::SIGKILL).unwrap();
        assert_eq!(exit_code(&child.wait().await.unwrap()), 137);
        assert!(
            eventually(FIVE_S, || !group_alive(pgid)).await,
            "{:?}",
            live_members(pgid)
        );
    });
}

fn terminate_is_graceful() {
    rt().block_on(async {
        let mut child = guarded(&os(&["sleep", "300"]), &[], &me()).unwrap();
        let pgid = child.pgid().unwrap();
        assert!(eventually(FIVE_S, || count_sleeps(pgid) == 1).await);
        let start = Instant::now();
        let status = child.terminate(Duration::from_secs(10)).await.unwrap();
        assert!(start.elapsed() < FIVE_S, "took {:?}", start.elapsed());
        // `sleep` died of SIGTERM; the guard, which ignores it, reported that.
        assert_eq!(exit_code(&status), 143);
        assert!(!group_alive(pgid));
    });
}

fn terminate_kills_what_ignores_sigterm() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let env = [(OsString::from("READY"), ready.clone().into_os_string())];
        let script = r#"trap "" TERM; sleep 300 & echo ok > "$READY"; wait"#;
        let mut child = guarded(&os(&["sh", "-c", script]), &env, &me()).unwrap();
        let pgid = child.pgid().unwrap();
        assert!(eventually(FIVE_S, || ready.exists() && count_sleeps(pgid) == 1).await);

        let grace = Duration::from_millis(300);
        let start = Instant::now();
        let status = child.terminate(grace).await.unwrap();
        let took = start.elapsed();
        assert!(took >= grace && took < grace + FIVE_S, "took {took:?}");
        assert_eq!(exit_code(&status), 137, "SIGKILLed after the grace period");
        assert!(!group_alive(pgid));
        assert_eq!(live_members(pgid), Vec::<String>::new());
    });
}

fn kill_group_leftovers_empties_the_group() {
    rt().block_on(async {
        let argv = os(&["sh", "-c", "sleep 300 & exit 3"]);
        let mut child = guarded(&argv, &[], &me()).unwrap();
        let pgid = child.pgid().unwrap();
        assert_eq!(exit_code(&child.wait().await.unwrap()), 3);
        assert!(group_alive(pgid), "the background sleep is left in the group");

        let start = Instant::now();
        child.kill_group_leftovers(Duration::from_secs(3)).await;
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
        assert!(!group_alive(pgid));
        assert_eq!(live_members(pgid), Vec::<String>::new());
        // Nothing left: a second call, and terminate, are no-ops that keep the status.
        child.kill_group_leftovers(Duration::from_secs(3)).await;
        let status = child.terminate(Duration::from_secs(3)).await.unwrap();
        assert_eq!(exit_code(&status), 3);
    });
}
