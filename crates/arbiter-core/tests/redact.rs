//! Property tests of `arbiter_core::redact`: no URL leaks its userinfo, query or
//! fragment, whatever surrounds them; no text leaks the secrets it is given; printable
//! text holds no control character.

use arbiter_core::redact;
use proptest::prelude::*;

proptest! {
    #[test]
    fn no_url_leaks_its_userinfo_query_or_fragment(
        scheme in "(http|https|HTTPS|postgres|postgresql|ftp|x-y)",
        user in "[A-Za-z0-9._~!$&'()*+,;=%-]{0,12}",
        password in proptest::option::of("[A-Za-z0-9._~!$&'()*+,;=:%/@-]{0,12}"),
        host in "[a-z0-9.-]{0,12}(:[0-9]{1,5})?",
        path in "(/[a-z0-9._~%@:-]{0,8}){0,3}",
        query in proptest::option::of("[A-Za-z0-9._~!$&'()*+,;=:/?@%-]{0,16}"),
        fragment in proptest::option::of("[A-Za-z0-9._~!$&'()*+,;=:/?@#%-]{0,16}"),
    ) {
        let userinfo = match &password {
            Some(p) => format!("{user}SECRETU:{p}SECRETP@"),
            None => format!("{user}SECRETU@"),
        };
        let query = query.map(|q| format!("?{q}SECRETQ")).unwrap_or_default();
        let fragment = fragment.map(|f| format!("#{f}SECRETF")).unwrap_or_default();
        let url = format!("{scheme}://{userinfo}{host}{path}{query}{fragment}");
        let shown = redact::url(&url);
        prop_assert!(!shown.contains("SECRET"), "{} shown as {}", url, shown);
        prop_assert_eq!(redact::url(&shown), shown.clone(), "redacting twice changes nothing");
    }

    #[test]
    fn any_text_redacts_without_panicking(text in "\\PC{0,64}") {
        let shown = redact::url(&text);
        prop_assert_eq!(redact::url(&shown), shown);
        let _ = redact::text(&text, &["x"]);
    }

    #[test]
    fn a_given_secret_never_survives(
        before in "(\\PC|\n){0,40}",
        secret in "[A-Za-z0-9_]{4,40}",
        after in "(\\PC|\n){0,40}",
    ) {
        let shown = redact::text(&format!("{before}{secret}{after}"), &[&secret]);
        prop_assert!(!shown.contains(&secret), "{}", shown);
    }

    #[test]
    fn printable_text_has_no_control_character(text in "(\\PC|\\p{Cc}){0,64}") {
        let shown = redact::printable(&text);
        prop_assert!(!shown.contains(char::is_control), "{:?}", shown);
        if !text.contains(char::is_control) {
            prop_assert_eq!(shown, text);
        }
    }
}
