//! Upgrades: a store written at schema version 4 (built from the SQL arbiter shipped,
//! `tests/fixtures/schema-v4-*.sql`) opens, migrates to the current version, keeps its data,
//! and ends with exactly the schema a new store gets.

use arbiter_core::name::Namespace;
use arbiter_store::{SCHEMA_VERSION, Store, StoreUrl};

use crate::{attempt, granted, n};

const SQLITE_V4: &str = include_str!("../fixtures/schema-v4-sqlite.sql");
const POSTGRES_V4: &str = include_str!("../fixtures/schema-v4-postgres.sql");

/// What a version-4 store holds: two namespaces' keys under the one store-wide revision
/// (3), and a lease name whose last fencing token is 7.
const V4_DATA: &str = "
    UPDATE revision SET value = 3 WHERE id = 1;
    INSERT INTO kv (namespace, key, value, version, create_revision) VALUES
        ('default', 'a', 'two', 3, 1), ('team-b', 'x', 'one', 2, 2);
    INSERT INTO kv_events (revision, namespace, key, kind, value) VALUES
        (1, 'default', 'a', 'put', 'one'), (2, 'team-b', 'x', 'put', 'one'), (3, 'default', 'a', 'put', 'two');
    INSERT INTO lease_names (namespace, name, slots, last_token) VALUES ('default', 'repo/main', 1, 7);
";

async fn open(url: &str) -> Store {
    Store::open(&StoreUrl::parse(url).expect("a store URL"))
        .await
        .expect("the store opens")
}

/// The data of a migrated version-4 store is all there and keeps counting from where it was.
async fn check_migrated(store: &Store) {
    assert_eq!(store.info().schema_version, SCHEMA_VERSION);
    let kv = store.kv();
    let ns = |text: &str| Namespace::parse(text).unwrap();
    // Every namespace known before continues from the old store-wide revision.
    assert_eq!(kv.revision(&ns("default")).await.unwrap(), 3);
    assert_eq!(kv.revision(&ns("team-b")).await.unwrap(), 3);
    assert_eq!(kv.revision(&ns("new")).await.unwrap(), 0);
    let a = kv.get(&n("default"), &n("a")).await.unwrap().expect("key a");
    assert_eq!((a.value.as_str(), a.version, a.create_revision), ("two", 3, 1));
    let history: Vec<_> = kv
        .events(&n("default"), &n(""), 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.version, e.value))
        .collect();
    assert_eq!(history, [(1, Some("one".to_string())), (3, Some("two".to_string()))]);
    assert_eq!(kv.put(&n("default"), &n("a"), "three", Some(3)).await.unwrap(), 4);
    assert_eq!(kv.put(&n("team-b"), &n("x"), "two", Some(2)).await.unwrap(), 4);
    assert_eq!(kv.put(&n("new"), &n("k"), "v", None).await.unwrap(), 1);
    // Fencing tokens continue past the last one recorded.
    let lease = granted(store.leases().acquire(attempt("repo/main", "a")).await.unwrap());
    assert_eq!(lease.token, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_sqlite_store_migrates_to_the_schema_of_a_new_one() {
    let old = arbiter_testkit::TempSqlite::new();
    {
        let conn = rusqlite::Connection::open(old.path()).unwrap();
        conn.execute_batch(SQLITE_V4).unwrap();
        conn.execute_batch(V4_DATA).unwrap();
        conn.execute_batch("PRAGMA user_version = 4; PRAGMA journal_mode = WAL;")
            .unwrap();
    }
    let store = open(&old.url()).await;
    check_migrated(&store).await;
    drop(store);

    let new = arbiter_testkit::TempSqlite::new();
    drop(open(&new.url()).await);
    let schema = |path: std::path::PathBuf| {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
    };
    let (migrated, fresh) = (schema(old.path()), schema(new.path()));
    assert!(fresh.iter().any(|(_, name, _, _)| name == "kv_revisions"), "{fresh:?}");
    assert_eq!(migrated, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_postgres_store_migrates_to_the_schema_of_a_new_one() {
    let test = "a_version_4_postgres_store_migrates";
    let (Some(old_url), Some(new_url)) = (
        arbiter_testkit::postgres_url(test).await,
        arbiter_testkit::postgres_url(test).await,
    ) else {
        return;
    };
    let server = arbiter_testkit::postgres_server();
    let schema_of = |url: &str| url.rsplit_once("?schema=").expect("a schema").1.to_string();
    let (old_schema, new_schema) = (schema_of(&old_url), schema_of(&new_url));
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {old_schema}; SET search_path = {old_schema};
             {POSTGRES_V4}
             {V4_DATA}
             CREATE TABLE arbiter_schema (version BIGINT NOT NULL);
             INSERT INTO arbiter_schema (version) VALUES (4);"
        ))
        .await
        .unwrap();
    let store = open(&old_url).await;
    check_migrated(&store).await;
    drop(store);
    drop(open(&new_url).await);

    // Tables, columns, constraints and indexes, with the schema's name taken out.
    let describe = async |schema: &str| -> Vec<String> {
        let rows = client
            .query(
                "SELECT format('column %s.%s %s %s %s %s', table_name, column_name, ordinal_position,
                               data_type, is_nullable, coalesce(column_default, ''))
                   FROM information_schema.columns WHERE table_schema = $1
                 UNION ALL
                 SELECT format('constraint %s %s', conname, pg_get_constraintdef(c.oid))
                   FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1
                 UNION ALL
                 SELECT format('index %s %s', indexname, replace(indexdef, $1 || '.', ''))
                   FROM pg_indexes WHERE schemaname = $1
                 ORDER BY 1",
                &[&schema],
            )
            .await
            .unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    };
    let (migrated, fresh) = (describe(&old_schema).await, describe(&new_schema).await);
    assert!(fresh.iter().any(|line| line.contains("kv_revisions")), "{fresh:?}");
    assert_eq!(migrated, fresh);
}
