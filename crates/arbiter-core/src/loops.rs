//! The supervisor's states, as types: how a round ended and what a loop is doing.
//!
//! Both are stored as their `as_str` text (the words `arbiter status` shows); `parse` reads
//! them back and refuses anything else, so control flow never branches on a string.

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::name::{LeaseName, LoopName};

/// The start of every loop's lease name (what a fleet view lists).
pub const LEASE_PREFIX: &str = "loop/";

/// The lease a loop runs under: `loop/<name>`. A loop name longer than 250 characters
/// makes no valid lease name.
pub fn lease_name(name: &LoopName) -> Result<LeaseName, ParseError> {
    LeaseName::parse(&format!("{LEASE_PREFIX}{name}"))
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored and shown word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Result<Self, ParseError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(ParseError::new(format!(
                        concat!("unknown ", stringify!($name), " {:?}: expected one of {}"),
                        other,
                        [$($text,)+].join(", ")
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(text: String) -> Result<Self, ParseError> {
                Self::parse(&text)
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> &'static str {
                value.as_str()
            }
        }
    };
}

text_enum!(
    /// How a round ended (or that it still runs).
    RoundStatus {
        Running => "running",
        /// The command exited 0.
        Succeeded => "succeeded",
        /// The command exited non-zero, was not found, or could not be started.
        Failed => "failed",
        /// The command ran past the loop's timeout and was stopped.
        TimedOut => "timed out",
        /// The supervisor lost the loop's lease and stopped the command.
        Lost => "lost",
        /// The supervisor was stopped during the round.
        Interrupted => "interrupted",
        /// The supervisor running it stopped mid-round (crashed or was killed); marked by the
        /// next holder.
        Abandoned => "abandoned",
    }
);

text_enum!(
    /// What a loop's supervisor last said it was doing.
    LoopStatus {
        /// Waiting for the next round after a success (or before the first).
        Idle => "idle",
        Running => "running",
        /// Waiting longer than the interval after failures.
        BackingOff => "backing off",
        /// `enabled = false` in the config.
        Disabled => "disabled",
        /// Waiting until an upstream that said "wait" (a GitHub rate limit: its reset or
        /// `retry-after`) lets its identity call again; not a failure.
        Paused => "paused",
        /// A round put off because the identity's budget left would not cover it (lower
        /// priority loops first); not a failure.
        Deferred => "deferred",
        /// The supervisor stopped and released the loop.
        Stopped => "stopped",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for status in RoundStatus::ALL {
            assert_eq!(RoundStatus::parse(status.as_str()), Ok(*status));
        }
        for status in LoopStatus::ALL {
            assert_eq!(LoopStatus::parse(status.as_str()), Ok(*status));
        }
        assert_eq!(serde_json::to_string(&RoundStatus::TimedOut).unwrap(), "\"timed out\"");
        assert_eq!(
            serde_json::from_str::<LoopStatus>("\"backing off\"").unwrap(),
            LoopStatus::BackingOff
        );
        let err = RoundStatus::parse("done").unwrap_err();
        assert!(
            err.message.contains("expected one of running, succeeded"),
            "{}",
            err.message
        );
    }
}
