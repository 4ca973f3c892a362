//! Arbitrary configuration text never panics the parser: it loads or is refused with a
//! message that names the file. (`PROPTEST_CASES=100000` for a longer run.)

use std::path::Path;

use arbiter_config::Config;
use proptest::prelude::*;

/// Fragments of real configurations, shuffled into nearly-valid files.
const FRAGMENTS: &[&str] = &[
    "[channels.a]\n",
    "type = \"stdout\"\n",
    "type = \"slack\"\n",
    "url = \"https://h/x\"\n",
    "url = \"nope\"\n",
    "[[routes]]\n",
    "channels = [\"a\"]\n",
    "channels = [\"b\"]\n",
    "kinds = [\"loop.*\"]\n",
    "digest = \"1h\"\n",
    "min_severity = \"warning\"\n",
    "[notifications]\n",
    "thresholds = [1, 3]\n",
    "timeout = \"5x\"\n",
    "[loops.x]\n",
    "repo = \".\"\n",
    "every = \"1s\"\n",
    "command = [\"true\"]\n",
    "command = \"true\"\n",
    "profile = \"p\"\n",
    "[profiles.p]\n",
    "gh_config_dir = \"/tmp/gh\"\n",
    "token_env = \"T\"\n",
    "= =\n",
    "[\n",
];

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "(\\PC|\n){0,400}") {
        if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
            prop_assert!(e.message.starts_with("fuzz.toml"), "{}", e.message);
        }
    }

    #[test]
    fn shuffled_fragments_never_panic(picks in proptest::collection::vec(0..FRAGMENTS.len(), 0..20)) {
        let text: String = picks.iter().map(|i| FRAGMENTS[*i]).collect();
        if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
            prop_assert!(e.message.starts_with("fuzz.toml:"), "{}", e.message);
        }
    }
}
