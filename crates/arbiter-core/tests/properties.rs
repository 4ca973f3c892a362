//! Property tests of the parsers and the pure text functions: arbitrary input never
//! panics, and what is accepted round-trips. (A coverage-guided fuzzer needs a nightly
//! toolchain this project does not assume; these run in every `cargo test`. Set
//! `PROPTEST_CASES=100000` for a longer run.)

use arbiter_core::decisions::{Entry, Index, Marker, merge, repair};
use arbiter_core::duration::{format_duration, parse_duration};
use arbiter_core::name::{validate_name, validate_namespace, validate_prefix};
use proptest::prelude::*;

proptest! {
    #[test]
    fn durations_never_panic_and_round_trip(text in "\\PC{0,24}") {
        if let Ok(duration) = parse_duration(&text) {
            prop_assert!(duration.as_millis() > 0);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }

    #[test]
    fn well_formed_durations_parse(d in 0u64..1000, h in 0u64..24, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
        let mut text = String::new();
        for (value, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if value > 0 {
                text.push_str(&format!("{value}{unit}"));
            }
        }
        let total = (((d * 24 + h) * 60 + m) * 60 + s) * 1000 + ms;
        match parse_duration(&text) {
            Ok(duration) => prop_assert_eq!(duration.as_millis() as u64, total),
            Err(_) => prop_assert_eq!(total, 0),
        }
    }

    #[test]
    fn names_never_panic(text in "\\PC{0,300}") {
        let _ = validate_name("name", &text);
        let _ = validate_prefix("prefix", &text);
        let _ = validate_namespace(&text);
        if validate_name("name", &text).is_ok() {
            prop_assert!(!text.is_empty() && text.len() <= 255);
            prop_assert!(!text.starts_with('/') && !text.ends_with('/') && !text.contains("//"));
        }
    }

    #[test]
    fn merging_is_idempotent(
        canonical in "(\\PC|\n){0,200}",
        entries in proptest::collection::vec(("\\PC{1,12}", "(\\PC|\n|\r|<!-- arbiter:(entry|end) id=[a-z]{1,2} -->){0,80}"), 0..6),
    ) {
        let entries: Vec<Entry> = entries.into_iter().map(|(stem, content)| Entry::from_file(&stem, content)).collect();
        let once = merge(&canonical, &entries);
        let twice = merge(&once.text, &entries);
        prop_assert_eq!(&twice.text, &once.text, "a second merge changes nothing");
        prop_assert!(twice.added.is_empty());
        let index = Index::of(&once.text);
        for entry in &entries {
            prop_assert!(index.contains(entry));
        }
        // What the merge added checks whole, whatever marker-like text the entries hold.
        let none = |_: &Marker| None;
        let checked = repair(&once.text[canonical.len().min(once.text.len())..], &none);
        if !canonical.contains("arbiter:") {
            prop_assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        }
    }
}
