//! Secrets are never shown: store URLs with passwords in validation errors, connection
//! errors and clap's help; (channel URLs: `notify::secrets_in_a_channel_url_are_never_shown_or_stored`).

use crate::support::{arbiter, run};

const PASSWORD: &str = "PW4567";

#[track_caller]
fn assert_secret_free(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD) && !text.contains("SECRET789"),
        "{what} leaks a secret: {text}"
    );
}

/// A PostgreSQL URL with a password that fails validation (a bad schema, an unknown
/// option) or cannot connect: exit 2 / 6 with the host shown and the password hidden.
#[test]
fn a_store_url_with_a_password_is_never_printed() {
    for (url, code, fragment) in [
        (
            format!("postgres://postgres:{PASSWORD}@127.0.0.1/test?schema=Bad"),
            2,
            "expected 1-63 characters",
        ),
        (
            format!("postgres://postgres:{PASSWORD}@127.0.0.1/test?bogus=1&token=SECRET789"),
            2,
            "invalid store URL",
        ),
        (
            format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/test"),
            6,
            "127.0.0.1",
        ),
    ] {
        for json in [false, true] {
            let mut cmd = arbiter();
            cmd.args(["kv", "get", "x", "--store", &url]);
            if json {
                cmd.arg("--json");
            }
            let out = run(&mut cmd);
            assert_eq!(out.code, code, "{url}: {out:?}");
            let text = format!("{}{}", out.stdout, out.stderr);
            assert_secret_free(&url, &text);
            assert!(text.contains(fragment), "{fragment:?} in {text}");
            if code == 2 {
                assert!(text.contains("postgres://***@127.0.0.1/test?…"), "{text}");
            }
        }
    }
}

/// `ARBITER_STORE` with a password is not echoed by `--help`'s `[env: …]`.
#[test]
fn help_hides_the_store_variable() {
    let url = format!("postgres://u:{PASSWORD}@127.0.0.1/test");
    for args in [&["kv", "--help"][..], &["--help"], &["lease", "acquire", "--help"]] {
        let out = run(arbiter().env("ARBITER_STORE", &url).args(args));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("ARBITER_STORE"), "{}", out.stdout);
        assert_secret_free("--help", &out.stdout);
    }
}
