//! The PostgreSQL connection: bounded (a silent server, a link that hangs after the store
//! was opened: exit 6 naming host and port, never a hang) and TLS (libpq's `sslmode`,
//! against a private server started with `ssl = on` and certificates the test makes).

use std::time::Duration;

use arbiter_testkit::net::{SilentListener, StallProxy, postgres_server_addr};

use crate::faults::postgres::PrivatePostgres;
use crate::support::{Background, Out, Store, arbiter, run_bounded};
use arbiter_testkit::eventually;

/// Generous: the defaults are seconds. The tests assert exit codes and messages, never time.
const LIMIT: Duration = Duration::from_secs(60);

fn arbiter_on(url: &str, args: &[&str]) -> Out {
    run_bounded(arbiter().arg("--store").arg(url).args(args), LIMIT)
}

#[track_caller]
fn expect_unavailable_naming(out: &Out, endpoint: &str, what: &str) {
    out.expect_code(6, what);
    assert!(
        out.stderr.contains(endpoint),
        "{what}: the message names {endpoint}: {}",
        out.stderr
    );
}

#[test]
fn a_server_that_never_speaks_is_unavailable_with_its_address() {
    let silent = SilentListener::start();
    let at = silent.addr().to_string();
    // The default connect timeout, then libpq's `connect_timeout`.
    let out = arbiter_on(&format!("postgres://postgres@{at}/test"), &["kv", "get", "k"]);
    expect_unavailable_naming(&out, &at, "kv get against a silent listener");
    assert!(
        out.stderr.contains("connect_timeout"),
        "it says which bound: {}",
        out.stderr
    );
    let out = arbiter_on(
        &format!("postgres://postgres@{at}/test?connect_timeout=1"),
        &["lease", "acquire", "x"],
    );
    expect_unavailable_naming(&out, &at, "lease acquire against a silent listener");
}

#[test]
fn a_link_that_hangs_is_unavailable_with_its_address_and_recovers() {
    let Some(store) = Store::postgres("a_link_that_hangs_is_unavailable_with_its_address_and_recovers") else {
        return;
    };
    let proxy = StallProxy::start(postgres_server_addr(&store.url));
    let at = proxy.addr().to_string();
    let url = format!("{}&statement_timeout=2s", proxy.postgres_url(&store.url));
    arbiter_on(&url, &["kv", "put", "k", "1"]).expect_code(0, "kv put through the proxy");

    // Frozen before a command starts: TCP connects (to the proxy), nothing else passes.
    proxy.freeze();
    let out = arbiter_on(&format!("{url}&connect_timeout=1"), &["kv", "put", "k", "2"]);
    expect_unavailable_naming(&out, &at, "kv put through a frozen link");
    proxy.resume();

    // Frozen after the store was opened: a running `kv watch` re-reads on a connection
    // that no longer answers, and its statement deadline ends it.
    let mut watch = Background::start(
        {
            let mut cmd = arbiter();
            // From the first revision: it prints the puts above once it has opened the store.
            cmd.args(["--store", &url, "kv", "watch", "k", "--from", "1"]);
            cmd
        },
        store.scratch.path(),
        "watch",
    );
    eventually(LIMIT, "the watch prints the changes so far", || {
        assert!(watch.running(), "kv watch exited: {}", watch.stderr());
        watch.stdout().contains('1').then_some(())
    });
    proxy.freeze();
    let code = watch.wait(LIMIT);
    assert_eq!(code, 6, "kv watch on a hung link exits 6: {}", watch.stderr());
    assert!(watch.stderr().contains(&at), "it names {at}: {}", watch.stderr());
    assert!(
        watch.stderr().contains("did not answer within 2s"),
        "it says which bound: {}",
        watch.stderr()
    );

    // The link is back: new connections work.
    proxy.resume();
    arbiter_on(&url, &["kv", "put", "k", "4"]).expect_code(0, "kv put once the link is back");
    assert_eq!(store.ok(&["kv", "get", "k"]).stdout.trim(), "4");
}

/// A CA, a server certificate it signed for `localhost`, and a client certificate for the
/// user `postgres`, all PEM.
struct Certs {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn make_certs(ca_name: &str) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("a server key");
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("the server certificate");
    let client_key = KeyPair::generate().expect("a client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params.distinguished_name.push(DnType::CommonName, "postgres");
    let client = client_params
        .signed_by(&client_key, &issuer)
        .expect("the client certificate");
    Certs {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A private server that accepts only TLS over TCP (`hostssl`), trusting the user when
/// `client_certs` is false and requiring a client certificate signed by the CA otherwise.
fn tls_server(test: &str, certs: &Certs, client_certs: bool) -> Option<PrivatePostgres> {
    PrivatePostgres::start_configured(test, |server| {
        server.write_data_file("server.crt", certs.server_cert.as_bytes(), false);
        server.write_data_file("server.key", certs.server_key.as_bytes(), false);
        server.write_data_file("root.crt", certs.ca.as_bytes(), false);
        server.write_data_file(
            "postgresql.conf",
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
            true,
        );
        let method = if client_certs { "cert" } else { "trust" };
        server.write_data_file(
            "pg_hba.conf",
            format!("local all all trust\nhostssl all all 127.0.0.1/32 {method}\n").as_bytes(),
            false,
        );
    })
}

fn write_private(dir: &std::path::Path, name: &str, contents: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a test file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.display().to_string()
}

#[test]
fn tls_sslmodes_against_a_server_that_accepts_only_tls() {
    let certs = make_certs("arbiter test CA");
    let Some(server) = tls_server("tls_sslmodes_against_a_server_that_accepts_only_tls", &certs, false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = write_private(dir.path(), "ca.pem", &certs.ca);
    let other = write_private(dir.path(), "other-ca.pem", &make_certs("another CA").ca);
    let port = server.port();
    let url = |host: &str, options: &str| format!("postgres://postgres@{host}:{port}/postgres?schema=tls&{options}");

    // require: encrypted, the certificate not checked.
    arbiter_on(&url("127.0.0.1", "sslmode=require"), &["kv", "put", "k", "1"]).expect_code(0, "sslmode=require");
    // prefer (the default) takes TLS when offered.
    arbiter_on(&url("127.0.0.1", ""), &["kv", "get", "k"]).expect_code(0, "the default sslmode");
    // verify-full with the right root and the certificate's host name.
    let out = arbiter_on(
        &url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")),
        &["kv", "get", "k"],
    );
    out.expect_code(0, "sslmode=verify-full, right root and host");
    assert_eq!(out.stdout.trim(), "1");
    // verify-ca does not check the name.
    arbiter_on(
        &url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
        &["kv", "get", "k"],
    )
    .expect_code(0, "sslmode=verify-ca on another name");

    // verify-full on a name the certificate is not for.
    let out = arbiter_on(
        &url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")),
        &["kv", "get", "k"],
    );
    expect_unavailable_naming(&out, &format!("127.0.0.1:{port}"), "verify-full, wrong host");
    assert!(
        out.stderr
            .contains("sslmode=verify-full: certificate for host 127.0.0.1 not valid"),
        "{}",
        out.stderr
    );
    // A root that did not sign it.
    let out = arbiter_on(
        &url("localhost", &format!("sslmode=verify-full&sslrootcert={other}")),
        &["kv", "get", "k"],
    );
    out.expect_code(6, "verify-full, wrong root");
    assert!(
        out.stderr
            .contains("sslmode=verify-full: the server's certificate is not signed by a root in sslrootcert="),
        "{}",
        out.stderr
    );
    // disable against a TLS-only server.
    let out = arbiter_on(&url("127.0.0.1", "sslmode=disable"), &["kv", "get", "k"]);
    expect_unavailable_naming(&out, &format!("127.0.0.1:{port}"), "sslmode=disable");
    assert!(
        out.stderr
            .contains("sslmode=disable: this server accepts only TLS connections"),
        "{}",
        out.stderr
    );
    // Bad values: exit 2 naming the option, before connecting.
    for (options, named) in [
        ("sslmode=verify", "sslmode=\"verify\""),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert=/nonexistent/ca.pem",
        ),
    ] {
        let out = arbiter_on(&url("localhost", options), &["kv", "get", "k"]);
        out.expect_code(2, options);
        assert!(out.stderr.contains(named), "{options}: {}", out.stderr);
    }
}

#[test]
fn tls_client_certificates() {
    let certs = make_certs("arbiter test CA");
    let Some(server) = tls_server("tls_client_certificates", &certs, true) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = write_private(dir.path(), "ca.pem", &certs.ca);
    let cert = write_private(dir.path(), "client.pem", &certs.client_cert);
    let key = write_private(dir.path(), "client.key", &certs.client_key);
    let base = format!(
        "postgres://postgres@localhost:{}/postgres?schema=tls&sslmode=verify-full&sslrootcert={ca}",
        server.port()
    );
    arbiter_on(&format!("{base}&sslcert={cert}&sslkey={key}"), &["kv", "put", "k", "1"])
        .expect_code(0, "with a client certificate");
    let out = arbiter_on(&base, &["kv", "get", "k"]);
    out.expect_code(6, "without a client certificate");
    // A key others may read is refused, like libpq does.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = arbiter_on(&format!("{base}&sslcert={cert}&sslkey={key}"), &["kv", "get", "k"]);
    out.expect_code(2, "a world-readable key");
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
}

/// `arbiter watch` on a store whose link goes silent: it keeps running (retrying, not
/// hanging, not exiting), and runs rounds and delivers notifications again once the link
/// is back.
#[test]
fn watch_survives_a_silent_store_and_resumes() {
    let Some(store) = Store::postgres("watch_survives_a_silent_store_and_resumes") else {
        return;
    };
    let proxy = StallProxy::start(postgres_server_addr(&store.url));
    let url = format!(
        "{}&statement_timeout=2s&connect_timeout=1",
        proxy.postgres_url(&store.url)
    );
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    std::fs::create_dir_all(dir.join("repo")).expect("the loop's repo dir");
    let rounds = dir.join("rounds");
    std::fs::write(
        dir.join("agent.sh"),
        format!("echo \"$ARBITER_ROUND\" >> {}\n", rounds.display()),
    )
    .expect("the agent");
    let config = dir.join("arbiter.toml");
    let delivered = dir.join("delivered.jsonl");
    std::fs::write(
        &config,
        format!(
            "[loops.pg]\nrepo = \"repo\"\nevery = \"1s\"\nbackoff_max = \"2s\"\ncommand = [\"sh\", \"../agent.sh\"]\ntimeout = \"1m\"\n\n\
             [channels.out]\ntype = \"file\"\npath = \"{}\"\n\n[[routes]]\nkinds = [\"test.*\"]\nchannels = [\"out\"]\n",
            delivered.display()
        ),
    )
    .expect("the config");
    let count = || std::fs::read_to_string(&rounds).unwrap_or_default().lines().count();
    let mut watch = Background::start(
        {
            let mut cmd = arbiter();
            cmd.arg("--store")
                .arg(&url)
                .arg("watch")
                .arg("--config")
                .arg(&config)
                .arg("--log-dir")
                .arg(dir.join("logs"))
                .args(["--lease-ttl", "5s"])
                .env("HOME", dir.join("home"))
                .env_remove("XDG_DATA_HOME")
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("ARBITER_CONFIG");
            cmd
        },
        &dir,
        "watch",
    );
    eventually(LIMIT, "a first round", || (count() >= 1).then_some(()));
    proxy.freeze();
    // The supervisor meets the silent store (its statements' deadline) and says so...
    eventually(LIMIT, "the supervisor to report the silent store", || {
        watch.stderr().contains("did not answer within").then_some(())
    });
    assert!(
        watch.running(),
        "watch keeps running on a silent store: {}",
        watch.stderr()
    );
    // ...and runs rounds again once it answers.
    let before = count();
    proxy.resume();
    eventually(LIMIT, "a round after the store is back", || {
        assert!(watch.running(), "watch exited: {}", watch.stderr());
        (count() > before).then_some(())
    });
    // The dispatcher inside watch delivers again too.
    let mut notify = arbiter();
    notify.args(["--store", &url, "--config"]).arg(&config).args([
        "notify",
        "--kind",
        "test.back",
        "--severity",
        "warning",
        "--title",
        "store is back",
    ]);
    run_bounded(&mut notify, LIMIT).expect_code(0, "notify once the store is back");
    eventually(LIMIT, "the dispatcher in watch to deliver", || {
        assert!(watch.running(), "watch exited: {}", watch.stderr());
        std::fs::read_to_string(&delivered)
            .unwrap_or_default()
            .contains("store is back")
            .then_some(())
    });
    watch.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(watch.wait(LIMIT), 0, "{}", watch.stderr());
}

/// A standing `arbiter dispatch` outlives a silent store: it says so, starts again with
/// backoff, and delivers once the store answers (`--once` would report exit 6 instead).
#[test]
fn dispatch_survives_a_silent_store_and_resumes() {
    let Some(store) = Store::postgres("dispatch_survives_a_silent_store_and_resumes") else {
        return;
    };
    let proxy = StallProxy::start(postgres_server_addr(&store.url));
    let url = format!(
        "{}&statement_timeout=2s&connect_timeout=1",
        proxy.postgres_url(&store.url)
    );
    let dir = std::fs::canonicalize(store.scratch.path()).expect("the scratch dir");
    let config = dir.join("arbiter.toml");
    let delivered = dir.join("delivered.jsonl");
    std::fs::write(
        &config,
        format!(
            "[channels.out]\ntype = \"file\"\npath = \"{}\"\n\n[[routes]]\nkinds = [\"test.*\"]\nchannels = [\"out\"]\n",
            delivered.display()
        ),
    )
    .expect("the config");
    let notify = |title: &str| {
        let mut cmd = arbiter();
        cmd.args(["--store", &url, "--config"]).arg(&config).args([
            "notify",
            "--kind",
            "test.x",
            "--severity",
            "warning",
            "--title",
            title,
        ]);
        run_bounded(&mut cmd, LIMIT).expect_code(0, "notify");
    };
    let seen = |title: &str| std::fs::read_to_string(&delivered).unwrap_or_default().contains(title);
    let mut dispatch = Background::start(
        {
            let mut cmd = arbiter();
            cmd.args(["--store", &url, "--config"]).arg(&config).arg("dispatch");
            cmd
        },
        &dir,
        "dispatch",
    );
    notify("before the stall");
    eventually(LIMIT, "a first delivery", || seen("before the stall").then_some(()));
    proxy.freeze();
    eventually(LIMIT, "the dispatcher to report the silent store", || {
        assert!(dispatch.running(), "dispatch exited: {}", dispatch.stderr());
        dispatch.stderr().contains("starting it again").then_some(())
    });
    proxy.resume();
    notify("after the stall");
    eventually(LIMIT, "a delivery after the store is back", || {
        assert!(dispatch.running(), "dispatch exited: {}", dispatch.stderr());
        seen("after the stall").then_some(())
    });
    dispatch.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(dispatch.wait(LIMIT), 0, "{}", dispatch.stderr());
}
