//! Holders that die: `kill -9` of `arbiter lock` (with and without its guard), and holders
//! recorded on another host.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

use crate::support::{AT_ONCE, Background, SOON, Store, alive, pid, token_of};
use arbiter_process::procfs;
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    kill_9_of_lock_and_guard,
    kill_9_of_lock_alone_kills_the_whole_command,
    holder_on_another_host_only_after_ttl,
);

/// `kill -9` of `arbiter lock` and of its child (the guard): the command dies by its
/// parent-death signal, and the next acquirer on this host gets the lease at once — well
/// before the 30 s TTL — with a larger token.
fn kill_9_of_lock_and_guard(store: &Store) {
    let mut lock = Background::start(
        store.cmd(&["lock", "crash", "--ttl", "30s", "--", "sleep", "300"]),
        store.scratch.path(),
        "lock",
    );
    let lease = store.wait_for_lock_holder("crash", &mut lock);
    let old_token = token_of(&lease);
    let guard = lease["holder"]["pgid"].as_u64().expect("a pgid") as u32;
    lock.also_kill_group(guard);
    assert_eq!(
        lease["holder"]["pid"].as_u64(),
        Some(u64::from(lock.pid())),
        "the holder is arbiter lock"
    );
    let command = eventually(SOON, "the command to start", || {
        procfs::group_members(guard).into_iter().find(|p| p.comm == "sleep")
    });
    assert_eq!(command.ppid, guard, "the guard is the command's parent");

    let killed = Instant::now();
    lock.signal(Signal::SIGKILL);
    kill(pid(guard), Signal::SIGKILL).expect("the guard can be killed");
    assert_eq!(lock.wait(SOON), 137);
    eventually(SOON, "the command to die with its guard", || {
        (!alive(command.pid)).then_some(())
    });
    eventually(SOON, "the guard to be gone", || (!alive(guard)).then_some(()));

    let out = store.ok(&["lease", "acquire", "crash", "--json"]);
    let new_token = token_of(&out.json());
    assert!(new_token > old_token, "{new_token} > {old_token}");
    let took = killed.elapsed();
    assert!(took < AT_ONCE, "taken over at once, not after the TTL: {took:?}");
    eprintln!("taken over {took:?} after kill -9");
}

/// `kill -9` of `arbiter lock` alone, running `sh -c 'sleep 300 & sleep 300'`: every process
/// of the command's group dies (the guard sees its lifeline break and kills the group), and
/// nobody gets the lease while any of them is alive. Once they are gone, it is free at once.
fn kill_9_of_lock_alone_kills_the_whole_command(store: &Store) {
    let mut lock = Background::start(
        store.cmd(&[
            "lock",
            "crash",
            "--ttl",
            "30s",
            "--",
            "sh",
            "-c",
            "sleep 300 & sleep 300",
        ]),
        store.scratch.path(),
        "lock",
    );
    let lease = store.wait_for_lock_holder("crash", &mut lock);
    let old_token = token_of(&lease);
    let pgid = lease["holder"]["pgid"].as_u64().expect("a pgid") as u32;
    lock.also_kill_group(pgid);
    let members = eventually(SOON, "both sleeps to start", || {
        let members = procfs::group_members(pgid);
        (members.iter().filter(|p| p.comm == "sleep").count() == 2).then_some(members)
    });
    assert!(
        members.iter().any(|p| p.pid == pgid),
        "the guard leads the group: {members:?}"
    );

    let killed = Instant::now();
    lock.signal(Signal::SIGKILL);
    assert_eq!(lock.wait(SOON), 137);
    // Contenders try to take the lease (no waiting) while the group dies: none may get it
    // while a member of the group still runs.
    let new_token = eventually(SOON, "an acquirer to take the lease over", || {
        let out = store.run(&["lease", "acquire", "crash", "--json"]);
        match out.code {
            0 => {
                let alive_now = procfs::group_members(pgid);
                assert!(
                    alive_now.is_empty(),
                    "the lease was taken over while the command's group still ran: {alive_now:?}"
                );
                Some(token_of(&out.json()))
            }
            3 => None,
            _ => panic!("unexpected: {out:?}"),
        }
    });
    let took = killed.elapsed();
    for member in &members {
        assert!(!alive(member.pid), "{member:?} is gone");
    }
    assert!(new_token > old_token, "{new_token} > {old_token}");
    assert!(took < AT_ONCE, "taken over well before the 30 s TTL: {took:?}");
    eprintln!("command group gone and lease taken over {took:?} after kill -9");
}

/// A holder recorded on another host is not judged by this host's process table: even
/// though its pid is gone here, the lease is free only after its TTL.
fn holder_on_another_host_only_after_ttl(store: &Store) {
    // The holder is the `sh` that ran `lease acquire`; it exits right after.
    let start = Instant::now();
    let mut cmd = store.sh(r#""$ARBITER" lease acquire remote --ttl 3s --json; true"#);
    let out = crate::support::run(&mut cmd)
        .expect_code(0, "the acquiring shell")
        .json();
    let old_token = token_of(&out);
    let holder_pid = out["holder"]["pid"].as_u64().expect("a pid") as u32;
    assert!(!alive(holder_pid), "the holding shell has exited");
    store.rewrite_holder("remote", |holder| holder["host"] = "elsewhere".into());

    let out = store.run(&["lease", "acquire", "remote"]);
    out.expect_code(3, "an acquire within the remote holder's TTL");
    assert!(
        out.stderr.contains("elsewhere"),
        "the message names the holder: {out:?}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(2800),
        "refused at once, within the TTL"
    );

    let out = store.ok(&["lease", "acquire", "remote", "--wait", "10s", "--json"]);
    let took = start.elapsed();
    let new_token = token_of(&out.json());
    assert!(new_token > old_token, "{new_token} > {old_token}");
    assert!(
        took >= Duration::from_millis(2900),
        "granted only after the 3 s TTL: {took:?}"
    );
    assert!(took < Duration::from_secs(7), "granted soon after the TTL: {took:?}");
}
