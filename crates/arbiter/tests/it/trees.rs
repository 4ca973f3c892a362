//! Whole process trees (Linux): a descendant that calls `setsid` (a new session and process
//! group, so `kill -- -PGID` misses it) is still gone after `arbiter lock` ends, after a
//! loop's timeout and after `arbiter watch` stops. The guard is a child subreaper, so such
//! orphans stay below it and are found and killed.

use std::path::Path;

use nix::sys::signal::Signal;

use crate::support::{Background, SOON, Store, alive};
use arbiter_process::procfs;
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    lock_kills_a_setsid_descendant,
    a_loop_timeout_kills_a_setsid_descendant,
    watch_stop_kills_a_setsid_descendant
);

/// A shell snippet: starts `setsid sh -c 'echo $$ > $ESC; exec sleep 1000'` in the
/// background and waits until it wrote its pid (so it did escape before anything ends).
const ESCAPE: &str = r#"setsid sh -c 'echo $$ > "$ESC.tmp" && mv "$ESC.tmp" "$ESC"; exec sleep 1000' &
until [ -e "$ESC" ]; do sleep 0.01; done"#;

/// The escapee's pid, once written; checks that it really left the command's group.
fn escapee(path: &Path) -> u32 {
    let pid: u32 = eventually(SOON, "the setsid descendant's pid", || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    });
    if let Some(p) = procfs::stat(pid) {
        assert_eq!(
            p.pgrp, pid,
            "the descendant leads a group of its own (it called setsid)"
        );
    }
    pid
}

/// Kills the escapee if a test failed and left it.
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = nix::sys::signal::kill(crate::support::pid(self.0), Signal::SIGKILL);
        }
    }
}

fn lock_kills_a_setsid_descendant(store: &Store) {
    let esc = store.scratch.path().join("esc");
    let go = store.scratch.path().join("go");
    let script = format!("{ESCAPE}\nuntil [ -e \"$GO\" ]; do sleep 0.01; done");
    let mut cmd = store.cmd(&["lock", "esc", "--", "sh", "-c", &script]);
    cmd.env("ESC", &esc).env("GO", &go);
    let mut lock = Background::start(cmd, store.scratch.path(), "lock");
    let pid = escapee(&esc);
    let _reap = Reap(pid);
    assert!(alive(pid), "the descendant runs while the command does");
    std::fs::write(&go, "").expect("write go");
    assert_eq!(lock.wait(SOON), 0, "the command's exit code: {}", lock.stderr());
    assert!(!alive(pid), "the setsid descendant (pid {pid}) outlived `arbiter lock`");
}

/// A one-loop config whose command runs `script` (with `$ESC` set), in `dir`.
fn one_loop(dir: &Path, script: &str, timeout: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("repo")).expect("a repo dir");
    let config = dir.join("arbiter.toml");
    let toml = format!(
        r#"
[loops.esc]
repo = "repo"
every = "1h"
command = ["sh", "-c", {script:?}]
timeout = "{timeout}"
grace = "200ms"
env = {{ ESC = {esc:?} }}
"#,
        esc = dir.join("esc").to_string_lossy(),
    );
    std::fs::write(&config, toml).expect("the config");
    config
}

fn watch(store: &Store, dir: &Path, config: &Path, args: &[&str], label: &str) -> Background {
    let mut cmd = store.cmd(&["watch"]);
    cmd.arg("--config")
        .arg(config)
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .args(args)
        .env("HOME", dir.join("home"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("ARBITER_CONFIG");
    Background::start(cmd, dir, label)
}

fn a_loop_timeout_kills_a_setsid_descendant(store: &Store) {
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    let config = one_loop(&dir, &format!("{ESCAPE}\nsleep 1000"), "1s");
    let mut watch = watch(store, &dir, &config, &["--once"], "watch");
    let pid = escapee(&dir.join("esc"));
    let _reap = Reap(pid);
    // A round that timed out failed: `watch --once` exits 7 (failed).
    assert_eq!(watch.wait(SOON), 7, "watch --once ends, failed: {}", watch.stderr());
    let status = store.ok(&["status", "--json"]).json();
    assert!(
        status.to_string().contains("timed out"),
        "the round timed out: {status}"
    );
    assert!(
        !alive(pid),
        "the setsid descendant (pid {pid}) outlived the loop's timeout"
    );
}

fn watch_stop_kills_a_setsid_descendant(store: &Store) {
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    let config = one_loop(&dir, &format!("{ESCAPE}\nsleep 1000"), "1h");
    let mut watch = watch(store, &dir, &config, &[], "watch");
    let pid = escapee(&dir.join("esc"));
    let _reap = Reap(pid);
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait(SOON), 0, "a clean stop: {}", watch.stderr());
    assert!(
        !alive(pid),
        "the setsid descendant (pid {pid}) outlived `arbiter watch`"
    );
}
