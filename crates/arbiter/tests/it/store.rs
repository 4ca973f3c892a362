//! The store itself: `store info`, and a brand-new store opened by many processes at once
//! (a fleet starting on a fresh machine).

use std::process::Stdio;

use crate::support::{Store, on_both_backends};

on_both_backends!(store_info_names_backend_location_and_schema);

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
