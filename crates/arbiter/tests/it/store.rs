//! The store itself: `store info`, and a brand-new store opened by many processes at once
//! (a fleet starting on a fresh machine).

use std::process::Stdio;

use crate::support::Store;
use arbiter_testkit::each_backend;

each_backend!(Store; store_info_names_backend_location_and_schema);

fn store_info_names_backend_location_and_schema(store: &Store) {
    let info = store.ok(&["store", "info", "--json"]).json();
    let backend = if store.is_postgres() { "postgres" } else { "sqlite" };
    assert_eq!(info["backend"], backend, "{info}");
    let location = info["location"].as_str().expect("a location");
    let schema_version = info["schema_version"].as_i64().expect("a schema version");
    assert!(schema_version >= 1, "{info}");
    if let Some((_, schema)) = store.url.split_once("?schema=") {
        assert!(location.contains(schema), "the location names the schema: {location}");
    } else {
        assert!(store.url.ends_with(location), "the location is the file: {location}");
    }
    let plain = store.ok(&["store", "info"]).stdout;
    assert!(plain.contains(&format!("backend: {backend}")), "{plain}");
    assert!(plain.contains(&format!("schema version: {schema_version}")), "{plain}");
    // Migrating an up-to-date store changes nothing.
    assert_eq!(store.ok(&["store", "migrate", "--json"]).json(), info);
}

/// Starts `PROCESSES` commands on `store` at once and asserts every one succeeded.
fn open_at_once(store: &Store, round: usize) {
    const PROCESSES: usize = 8;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            store
                .cmd(&["lease", "list"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("arbiter starts")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("arbiter runs");
        assert!(
            out.status.success(),
            "round {round}: a process opening the new store failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// 8 processes open one brand-new SQLite store at once, 60 times over: every one succeeds
/// (the busy timeout covers creating the file, switching it to WAL and migrating it).
#[test]
fn many_processes_open_a_new_sqlite_store_at_once() {
    for round in 0..60 {
        open_at_once(&Store::sqlite(), round);
    }
}

/// The same on fresh PostgreSQL schemas (migrations run under an advisory lock).
#[test]
fn many_processes_open_a_new_postgres_schema_at_once() {
    for round in 0..5 {
        let Some(store) = Store::postgres("open_at_once") else {
            return;
        };
        open_at_once(&store, round);
    }
}

/// A SQLite store arbiter creates is its owner's alone: the file, its -wal and -shm 0600
/// (read by a command that runs while `arbiter lock` holds the store open), whatever the
/// umask; a default data directory is created 0700. A store path that is a link to a
/// missing file is refused (creating it would write through the link) and nothing is
/// created.
#[test]
fn a_new_sqlite_store_is_private_and_never_created_through_a_link() {
    let store = Store::sqlite();
    let db = store.sqlite_path().unwrap().display().to_string();
    let modes = store.scratch.path().join("modes");
    let script = format!("stat -c %a {db} {db}-wal {db}-shm > {}", modes.display());
    store.ok(&["lock", "x", "--", "sh", "-c", &script]);
    let modes = std::fs::read_to_string(modes).unwrap();
    assert_eq!(modes.lines().collect::<Vec<_>>(), ["600", "600", "600"], "{modes}");

    let home = store.scratch.path().join("home");
    let out = crate::support::run(
        crate::support::arbiter()
            .env("HOME", &home)
            .env_remove("XDG_DATA_HOME")
            .args(["kv", "put", "k", "v"]),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let data = home.join(".local/share/arbiter");
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777
    };
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("arbiter.db")), 0o600);

    let target = store.scratch.path().join("elsewhere.db");
    let link = store.scratch.path().join("link.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = crate::support::run(
        crate::support::arbiter()
            .args(["kv", "put", "k", "v", "--store"])
            .arg(&link),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("it is a symbolic link"), "{}", out.stderr);
    assert!(!target.exists(), "nothing was created through the link");
}
