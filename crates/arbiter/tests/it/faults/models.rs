//! Sequential specifications the histories are checked against: one lease used as a lock
//! (one name), and one versioned key used as a register with compare-and-swap.

use super::linearizability::Model;

/// Clients are numbered 0..64 in one history (a bit each in [`LockState::dead`]).
pub const MAX_CLIENTS: u32 = 64;

/// A lease with one slot, as `arbiter lease acquire/renew/release` (no `--wait`) see it,
/// with TTLs long enough that nothing expires during a run.
///
/// - `acquire` by client `c` is granted a token larger than every token granted before
///   when the lease is free, or when its holder's process is dead (the CLI takes over a
///   dead holder on the same host at once). It is refused (`Held`, exit 3) only while the
///   holder's process is alive: a refusal after the holder died would mean the takeover
///   did not happen.
/// - `renew`/`release` with token `t` succeed iff `t` is the current holder's token (a
///   token is the capability, whoever presents it); otherwise they fail with `Lost`
///   (exit 4). `release` frees the lease.
/// - `Death { client }`: the client process (the holder `lease acquire` records) is gone:
///   killed with `kill -9`, or exited after its last operation.
///
/// An acquire whose answer nobody saw may have taken the lease with a token nobody knows:
/// the holder's token is then `None`, and the last token granted only a lower bound.
#[derive(Debug, Clone, Copy)]
pub struct LockModel;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockState {
    pub holder: Option<Holding>,
    /// The largest token granted so far (a lower bound if an unseen acquire took one).
    pub last_token: i64,
    /// Bit `c`: client `c` is dead.
    pub dead: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holding {
    /// `None`: granted to an acquire whose answer nobody saw.
    pub token: Option<i64>,
    pub owner: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockIn {
    Acquire { client: u32 },
    Renew { token: i64 },
    Release { token: i64 },
    Death { client: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOut {
    Granted(i64),
    Held,
    Ok,
    Lost,
}

impl LockState {
    fn is_dead(&self, client: u32) -> bool {
        self.dead & (1 << client) != 0
    }
    /// Whether an acquire may get the lease now: free, or its holder is dead.
    fn takeable(&self) -> bool {
        self.holder.as_ref().is_none_or(|h| self.is_dead(h.owner))
    }
    fn holds(&self, token: i64) -> bool {
        self.holder.as_ref().is_some_and(|h| h.token == Some(token))
    }
}

impl Model for LockModel {
    type State = LockState;
    type Input = LockIn;
    type Output = LockOut;

    fn init(&self) -> LockState {
        LockState {
            holder: None,
            last_token: 0,
            dead: 0,
        }
    }

    fn step(&self, s: &LockState, input: &LockIn, output: Option<&LockOut>) -> Vec<LockState> {
        let same = || vec![s.clone()];
        match (input, output) {
            (LockIn::Acquire { client }, Some(LockOut::Granted(token))) => {
                if s.takeable() && *token > s.last_token {
                    vec![LockState {
                        holder: Some(Holding {
                            token: Some(*token),
                            owner: *client,
                        }),
                        last_token: *token,
                        dead: s.dead,
                    }]
                } else {
                    vec![]
                }
            }
            (LockIn::Acquire { .. }, Some(LockOut::Held)) => {
                if s.takeable() {
                    vec![]
                } else {
                    same()
                }
            }
            (LockIn::Acquire { client }, None) => {
                let mut next = same();
                if s.takeable() {
                    next.push(LockState {
                        holder: Some(Holding {
                            token: None,
                            owner: *client,
                        }),
                        last_token: s.last_token + 1,
                        dead: s.dead,
                    });
                }
                next
            }
            (LockIn::Renew { token }, Some(LockOut::Ok)) => {
                if s.holds(*token) {
                    same()
                } else {
                    vec![]
                }
            }
            (LockIn::Renew { token } | LockIn::Release { token }, Some(LockOut::Lost)) => {
                if s.holds(*token) {
                    vec![]
                } else {
                    same()
                }
            }
            (LockIn::Renew { .. }, None) => same(),
            (LockIn::Release { token }, Some(LockOut::Ok)) => {
                if s.holds(*token) {
                    vec![LockState {
                        holder: None,
                        ..s.clone()
                    }]
                } else {
                    vec![]
                }
            }
            (LockIn::Release { token }, None) => {
                let mut next = same();
                if s.holds(*token) {
                    next.push(LockState {
                        holder: None,
                        ..s.clone()
                    });
                }
                next
            }
            (LockIn::Death { client }, _) => vec![LockState {
                dead: s.dead | (1 << client),
                ..s.clone()
            }],
            // Any other answer (a renew that was "granted", ...) is impossible.
            _ => vec![],
        }
    }
}

/// One versioned key used with compare-and-swap: `kv get --json` and
/// `kv put KEY VALUE --if-version N` (0: only if absent).
///
/// - `get` answers the current value and version, or `Missing`.
/// - `put` succeeds iff the key is at `if_version` (absent for 0); the new version is
///   larger than the old one (versions come from one store-wide revision counter). A
///   mismatch is a `Conflict` (exit 3).
///
/// Values are unique per put (numbered by the caller). A put whose answer nobody saw may
/// have written its value with a version nobody knows: the state then keeps only a lower
/// bound, which the first read of that value pins down.
#[derive(Debug, Clone, Copy)]
pub struct RegisterModel;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Register {
    pub value: u32,
    pub version: i64,
    /// `false`: `version` is only a lower bound.
    pub exact: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegIn {
    Get,
    Put { value: u32, if_version: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOut {
    Found { value: u32, version: i64 },
    Missing,
    Written(i64),
    Conflict,
}

fn cas_matches(state: &Option<Register>, if_version: i64) -> bool {
    match state {
        None => if_version == 0,
        // A version nobody saw cannot be the one a client names: it read its version first.
        Some(r) => r.exact && r.version == if_version,
    }
}

impl Model for RegisterModel {
    type State = Option<Register>;
    type Input = RegIn;
    type Output = RegOut;

    fn init(&self) -> Option<Register> {
        None
    }

    fn step(&self, s: &Option<Register>, input: &RegIn, output: Option<&RegOut>) -> Vec<Option<Register>> {
        let version = s.as_ref().map_or(0, |r| r.version);
        match (input, output) {
            (RegIn::Get, Some(RegOut::Missing)) if s.is_none() => vec![None],
            (RegIn::Get, Some(RegOut::Found { value, version: seen })) => match s {
                Some(r) if r.value == *value && (r.version == *seen || !r.exact && *seen >= r.version) => {
                    vec![Some(Register {
                        value: *value,
                        version: *seen,
                        exact: true,
                    })]
                }
                _ => vec![],
            },
            (RegIn::Get, None) => vec![s.clone()],
            (RegIn::Put { value, if_version }, Some(RegOut::Written(new))) => {
                if cas_matches(s, *if_version) && *new > version {
                    vec![Some(Register {
                        value: *value,
                        version: *new,
                        exact: true,
                    })]
                } else {
                    vec![]
                }
            }
            (RegIn::Put { if_version, .. }, Some(RegOut::Conflict)) => {
                if cas_matches(s, *if_version) {
                    vec![]
                } else {
                    vec![s.clone()]
                }
            }
            (RegIn::Put { value, if_version }, None) => {
                let mut next = vec![s.clone()];
                if cas_matches(s, *if_version) {
                    next.push(Some(Register {
                        value: *value,
                        version: version + 1,
                        exact: false,
                    }));
                }
                next
            }
            _ => vec![],
        }
    }
}
