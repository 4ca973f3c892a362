//! A lease taken from a script stays held while the script lives, however the call is
//! wrapped: a pipe inside `$(…)`, `timeout`, `xargs`, `sh -c`. A second acquirer on the same
//! host gets exit 3 until the script exits; then the lease is taken over at once (the
//! holder is gone and its group empty). `--holder-pid` names the holder explicitly.

use crate::support::{Background, SOON, Store};
use arbiter_testkit::{each_backend, eventually};

each_backend!(
    Store;
    wrapped_acquires_stay_held_while_the_script_lives,
    holder_pid_names_the_holder
);

/// The four forms: each script takes lease `NAME`, writes the token to `$OUT`, and waits
/// for `$GO` to exist.
const FORMS: &[(&str, &str)] = &[
    (
        "pipe",
        r#"tok=$("$ARBITER" lease acquire pipe --ttl 1m | tr -d '\n'); echo "$tok" > "$OUT""#,
    ),
    (
        "timeout",
        r#"timeout 60 "$ARBITER" lease acquire timeout --ttl 1m > "$OUT""#,
    ),
    (
        "xargs",
        r#"echo xargs | xargs -I{} "$ARBITER" lease acquire {} --ttl 1m > "$OUT""#,
    ),
    ("shc", r#"sh -c '"$ARBITER" lease acquire shc --ttl 1m | cat' > "$OUT""#),
];

fn wrapped_acquires_stay_held_while_the_script_lives(store: &Store) {
    store.ok(&["store", "migrate"]);
    let dir = store.scratch.path();
    let mut scripts = Vec::new();
    for (name, form) in FORMS {
        let out = dir.join(format!("{name}.token"));
        let go = dir.join(format!("{name}.go"));
        let script = format!(
            r#"{form}
until [ -e "$GO" ]; do sleep 0.01; done"#
        );
        let mut cmd = store.sh(&script);
        cmd.env("OUT", &out).env("GO", &go);
        let mut script = Background::start(cmd, dir, name);
        let token = eventually(SOON, &format!("the {name} script's token"), || {
            assert!(script.running(), "the {name} script ended: {}", script.stderr());
            let text = std::fs::read_to_string(&out).ok()?;
            text.trim().parse::<i64>().ok()
        });
        assert!(token > 0, "{name}: a token");
        scripts.push((name, go, script));
    }
    for (name, _, _) in &scripts {
        let out = store.run(&["lease", "acquire", name]);
        out.expect_code(3, &format!("{name}: a second acquire while the script lives"));
    }
    for (name, go, mut script) in scripts {
        std::fs::write(&go, "").expect("write go");
        assert_eq!(script.wait(SOON), 0, "{name}: the script ends: {}", script.stderr());
        store.ok(&["lease", "acquire", name, "--ttl", "1m"]);
    }
}

fn holder_pid_names_the_holder(store: &Store) {
    let mut sleeper = Background::start(
        {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("300");
            cmd
        },
        store.scratch.path(),
        "sleeper",
    );
    let pid = sleeper.pid().to_string();
    store.ok(&["lease", "acquire", "named", "--holder-pid", &pid]);
    assert_eq!(
        store.stored_holder("named")["pid"].as_u64(),
        Some(u64::from(sleeper.pid())),
        "the named process holds it"
    );
    store
        .run(&["lease", "acquire", "named"])
        .expect_code(3, "held while it lives");
    sleeper.signal(nix::sys::signal::Signal::SIGKILL);
    sleeper.wait(SOON);
    store.ok(&["lease", "acquire", "named"]);
    let out = store.run(&["lease", "acquire", "other", "--holder-pid", "999999999"]);
    out.expect_code(2, "a pid that does not exist");
    assert!(
        out.stderr.contains("--holder-pid 999999999: no such process"),
        "{out:?}"
    );
}
