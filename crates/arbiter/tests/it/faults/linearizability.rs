//! A small linearizability checker: Wing & Gong's search, with Lowe's memoization of
//! (linearized set, model state), as in Knossos and Porcupine.
//!
//! A history is a set of operations, each with the wall-clock time it was invoked and (if
//! it returned) the time it returned, its input and its output. It is linearizable if the
//! operations can be put in one order that respects real time (an operation that returned
//! before another was invoked comes first) and in which every output is one the sequential
//! model allows.
//!
//! Operations whose outcome is unknown — the client was killed before it saw an answer
//! (`ret: None`), or it got an error that does not say whether the change was made — may
//! take effect at any point after their invocation (and before their return, if they
//! returned) or never: they are optional in the search. The model says what each may have
//! done (`Model::step` with `output: None`), so it may be nondeterministic.
//!
//! The search is bounded by a step budget: a history too hard to decide within it is
//! reported as [`Verdict::Exhausted`], which callers treat as a failure, never a pass.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    type Output: Debug;

    fn init(&self) -> Self::State;

    /// The states the object may be in after an operation with `input` takes effect in
    /// `state` and answers `output` (`None`: nobody saw the answer). Empty: that answer is
    /// impossible in `state`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Vec<Self::State>;
}

/// One operation of a history. Times are in any one unit of one clock (here: microseconds
/// of the host's wall clock).
#[derive(Debug, Clone)]
pub struct Op<I, O> {
    /// Who ran it (for reports only).
    pub client: u32,
    pub call: u64,
    /// `None`: it never returned (its client was killed).
    pub ret: Option<u64>,
    pub input: I,
    /// `None`: the outcome is unknown; the operation is optional.
    pub output: Option<O>,
}

impl<I, O> Op<I, O> {
    fn required(&self) -> bool {
        self.output.is_some()
    }
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<S> {
    /// A linearization exists; `order` is one (indices into the history; optional
    /// operations that were left out do not appear), `states` the model's state after each.
    Linearizable {
        steps: u64,
        order: Vec<usize>,
        states: Vec<S>,
    },
    /// None exists. `longest` is the longest prefix of a linearization the search found,
    /// `stuck` the required operations that could not follow it.
    Violation {
        steps: u64,
        longest: Vec<usize>,
        stuck: Vec<usize>,
    },
    /// The step budget ran out before the search could decide.
    Exhausted { steps: u64 },
}

impl<S> Verdict<S> {
    pub fn steps(&self) -> u64 {
        match self {
            Verdict::Linearizable { steps, .. } | Verdict::Violation { steps, .. } | Verdict::Exhausted { steps } => {
                *steps
            }
        }
    }
}

/// A set of operation indices.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn with(&self, i: usize) -> Bits {
        let mut next = self.clone();
        next.0[i / 64] |= 1 << (i % 64);
        next
    }
}

struct Frame<S> {
    done: Bits,
    state: S,
    /// The operation that led here.
    via: Option<usize>,
    /// The latest invocation among the linearized operations: an optional operation that
    /// returned before it can no longer be linearized.
    max_call: u64,
    /// Required operations not linearized yet.
    left: usize,
    /// (operation, next state) pairs still to try; computed on the first visit.
    children: Option<Vec<(usize, S)>>,
}

/// Checks `history` against `model`, trying at most `budget` steps.
pub fn check<M: Model>(model: &M, history: &[Op<M::Input, M::Output>], budget: u64) -> Verdict<M::State> {
    for op in history {
        assert!(
            op.ret.is_some() || op.output.is_none(),
            "an operation that never returned has no output: {op:?}"
        );
        assert!(
            op.ret.is_none_or(|ret| ret >= op.call),
            "returned before invoked: {op:?}"
        );
    }
    let n = history.len();
    let mut by_call: Vec<usize> = (0..n).collect();
    by_call.sort_by_key(|&i| history[i].call);
    let required = history.iter().filter(|op| op.required()).count();

    let init = model.init();
    let mut seen: HashSet<(Bits, M::State)> = HashSet::new();
    seen.insert((Bits::new(n), init.clone()));
    let mut stack = vec![Frame {
        done: Bits::new(n),
        state: init,
        via: None,
        max_call: 0,
        left: required,
        children: None,
    }];
    let mut steps = 0u64;
    // (depth, path, stuck) of the deepest frame visited: what a violation reports.
    let mut deepest: Option<(usize, Vec<usize>, Vec<usize>)> = None;

    while let Some(top) = stack.last() {
        if top.left == 0 {
            let order = stack.iter().filter_map(|f| f.via).collect();
            let states = stack.iter().skip(1).map(|f| f.state.clone()).collect();
            return Verdict::Linearizable { steps, order, states };
        }
        if top.children.is_none() {
            // Every candidate must be invoked no later than the earliest return among the
            // required operations still to linearize (those must not come after it).
            let min_ret = (0..n)
                .filter(|&i| !top.done.has(i) && history[i].required())
                .filter_map(|i| history[i].ret)
                .min()
                .unwrap_or(u64::MAX);
            let mut children = Vec::new();
            for &i in &by_call {
                let op = &history[i];
                if op.call > min_ret {
                    break;
                }
                if top.done.has(i) || op.ret.is_some_and(|ret| ret < top.max_call) {
                    continue;
                }
                for next in model.step(&top.state, &op.input, op.output.as_ref()) {
                    children.push((i, next));
                }
            }
            // Children are popped from the back: reverse to try the earliest invoked first.
            children.reverse();
            let depth = stack.len() - 1;
            if deepest.as_ref().is_none_or(|(d, _, _)| depth > *d) {
                let path = stack.iter().filter_map(|f| f.via).collect();
                let stuck = (0..n).filter(|&i| !top.done.has(i) && history[i].required()).collect();
                deepest = Some((depth, path, stuck));
            }
            stack.last_mut().expect("the frame being visited").children = Some(children);
        }
        let top = stack.last_mut().expect("the frame being visited");
        let Some((i, next)) = top.children.as_mut().and_then(Vec::pop) else {
            stack.pop();
            continue;
        };
        steps += 1;
        if steps > budget {
            return Verdict::Exhausted { steps };
        }
        let key = (top.done.with(i), next);
        if seen.contains(&key) {
            continue;
        }
        seen.insert(key.clone());
        let (done, state) = key;
        let frame = Frame {
            done,
            state,
            via: Some(i),
            max_call: top.max_call.max(history[i].call),
            left: top.left - usize::from(history[i].required()),
            children: None,
        };
        stack.push(frame);
    }
    let (_, longest, stuck) = deepest.unwrap_or_default();
    Verdict::Violation { steps, longest, stuck }
}

/// A readable account of a history and the verdict, for the file a failing test saves.
pub fn render<I: Debug, O: Debug, S: Debug>(history: &[Op<I, O>], verdict: &Verdict<S>) -> String {
    let mut text = String::new();
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&i| (history[i].call, history[i].ret));
    text.push_str("# operations by invocation time (µs; ret - = never returned; out - = unknown)\n");
    let base = history.iter().map(|op| op.call).min().unwrap_or(0);
    for i in order {
        let op = &history[i];
        let ret = op.ret.map(|r| (r - base).to_string()).unwrap_or_else(|| "-".into());
        let out = op
            .output
            .as_ref()
            .map(|o| format!("{o:?}"))
            .unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "#{i:<4} client {:<3} [{:>10}, {:>10}] {:?} -> {out}\n",
            op.client,
            op.call - base,
            ret,
            op.input
        ));
    }
    match verdict {
        Verdict::Violation { longest, stuck, .. } => {
            text.push_str(&format!("\n# longest linearizable prefix found: {longest:?}\n"));
            text.push_str(&format!("# required operations that cannot follow it: {stuck:?}\n"));
        }
        other => text.push_str(&format!("\n# verdict: {other:?}\n")),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::models::{LockIn, LockModel, LockOut, RegIn, RegOut, RegisterModel};
    use super::*;

    const BUDGET: u64 = 100_000;

    fn op<I, O>(client: u32, call: u64, ret: Option<u64>, input: I, output: Option<O>) -> Op<I, O> {
        Op {
            client,
            call,
            ret,
            input,
            output,
        }
    }

    fn linearizable<M: Model>(model: &M, history: &[Op<M::Input, M::Output>]) -> bool {
        match check(model, history, BUDGET) {
            Verdict::Linearizable { order, .. } => {
                assert!(
                    history
                        .iter()
                        .enumerate()
                        .all(|(i, op)| !op.required() || order.contains(&i))
                );
                true
            }
            Verdict::Violation { .. } => false,
            Verdict::Exhausted { steps } => panic!("a tiny history exhausted the budget after {steps} steps"),
        }
    }

    #[test]
    fn accepts_a_lock_history_with_overlap_and_handover() {
        // A and B race for the lock; B wins (token 1), A is refused; B releases; A gets 2.
        let history = vec![
            op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Held)),
            op(1, 1, Some(9), LockIn::Acquire { client: 1 }, Some(LockOut::Granted(1))),
            op(1, 11, Some(20), LockIn::Renew { token: 1 }, Some(LockOut::Ok)),
            op(0, 12, Some(19), LockIn::Release { token: 7 }, Some(LockOut::Lost)),
            op(1, 21, Some(30), LockIn::Release { token: 1 }, Some(LockOut::Ok)),
            op(
                0,
                25,
                Some(40),
                LockIn::Acquire { client: 0 },
                Some(LockOut::Granted(2)),
            ),
            op(1, 41, Some(50), LockIn::Renew { token: 1 }, Some(LockOut::Lost)),
        ];
        assert!(linearizable(&LockModel, &history));
    }

    #[test]
    fn rejects_two_overlapping_successful_acquires() {
        let history = vec![
            op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Granted(1))),
            op(1, 1, Some(9), LockIn::Acquire { client: 1 }, Some(LockOut::Granted(2))),
        ];
        assert!(!linearizable(&LockModel, &history));
    }

    #[test]
    fn rejects_tokens_that_do_not_increase() {
        let history = vec![
            op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Granted(5))),
            op(0, 11, Some(20), LockIn::Release { token: 5 }, Some(LockOut::Ok)),
            op(
                1,
                21,
                Some(30),
                LockIn::Acquire { client: 1 },
                Some(LockOut::Granted(5)),
            ),
        ];
        assert!(!linearizable(&LockModel, &history));
    }

    #[test]
    fn rejects_a_refusal_of_a_free_lock_and_a_stale_token_that_works() {
        let refused = vec![op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Held))];
        assert!(!linearizable(&LockModel, &refused));
        let stale = vec![
            op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Granted(1))),
            op(0, 11, Some(20), LockIn::Release { token: 1 }, Some(LockOut::Ok)),
            op(0, 21, Some(30), LockIn::Renew { token: 1 }, Some(LockOut::Ok)),
        ];
        assert!(!linearizable(&LockModel, &stale));
    }

    #[test]
    fn a_dead_holder_may_be_taken_over_a_live_one_not() {
        // Client 0 holds token 1; client 1 takes over only after client 0's death.
        let takeover = vec![
            op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Granted(1))),
            op(9, 20, Some(30), LockIn::Death { client: 0 }, Some(LockOut::Ok)),
            op(
                1,
                25,
                Some(40),
                LockIn::Acquire { client: 1 },
                Some(LockOut::Granted(2)),
            ),
        ];
        assert!(linearizable(&LockModel, &takeover));
        let premature = vec![
            op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Granted(1))),
            op(
                1,
                11,
                Some(19),
                LockIn::Acquire { client: 1 },
                Some(LockOut::Granted(2)),
            ),
            op(9, 20, Some(30), LockIn::Death { client: 0 }, Some(LockOut::Ok)),
        ];
        assert!(!linearizable(&LockModel, &premature));
        // Once the holder is dead (death completed), a refusal is wrong: the CLI takes over.
        let refused_after_death = vec![
            op(0, 0, Some(10), LockIn::Acquire { client: 0 }, Some(LockOut::Granted(1))),
            op(9, 20, Some(30), LockIn::Death { client: 0 }, Some(LockOut::Ok)),
            op(1, 31, Some(40), LockIn::Acquire { client: 1 }, Some(LockOut::Held)),
        ];
        assert!(!linearizable(&LockModel, &refused_after_death));
    }

    #[test]
    fn an_unanswered_acquire_may_or_may_not_have_taken_effect() {
        // Client 0 was killed during its acquire: client 1 may have been refused (it took
        // effect: client 0 held the lock until it died) ...
        let took_effect = vec![
            op(0, 0, None, LockIn::Acquire { client: 0 }, None),
            op(1, 5, Some(10), LockIn::Acquire { client: 1 }, Some(LockOut::Held)),
            op(9, 12, Some(14), LockIn::Death { client: 0 }, Some(LockOut::Ok)),
            // ... and the token it may have taken counts: the next one must be larger than 1.
            op(
                1,
                20,
                Some(30),
                LockIn::Acquire { client: 1 },
                Some(LockOut::Granted(2)),
            ),
        ];
        assert!(linearizable(&LockModel, &took_effect));
        // ... or it never happened.
        let never = vec![
            op(0, 0, None, LockIn::Acquire { client: 0 }, None),
            op(1, 5, Some(10), LockIn::Acquire { client: 1 }, Some(LockOut::Granted(1))),
        ];
        assert!(linearizable(&LockModel, &never));
        // An operation with an unknown outcome that returned cannot take effect after its
        // return: here only an acquire at [0, 3] could explain the refusal at [10, 20] —
        // but its client died at [4, 5] before, so the lock would have been taken over.
        let too_late = vec![
            op(0, 0, Some(3), LockIn::Acquire { client: 0 }, None),
            op(9, 4, Some(5), LockIn::Death { client: 0 }, Some(LockOut::Ok)),
            op(1, 10, Some(20), LockIn::Acquire { client: 1 }, Some(LockOut::Held)),
        ];
        assert!(!linearizable(&LockModel, &too_late));
    }

    #[test]
    fn register_accepts_concurrent_cas_and_reads() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                RegIn::Put {
                    value: 1,
                    if_version: 0,
                },
                Some(RegOut::Written(3)),
            ),
            op(
                1,
                2,
                Some(8),
                RegIn::Put {
                    value: 2,
                    if_version: 0,
                },
                Some(RegOut::Conflict),
            ),
            op(1, 5, Some(6), RegIn::Get, Some(RegOut::Missing)),
            op(
                2,
                11,
                Some(20),
                RegIn::Get,
                Some(RegOut::Found { value: 1, version: 3 }),
            ),
            op(
                2,
                21,
                Some(30),
                RegIn::Put {
                    value: 3,
                    if_version: 3,
                },
                Some(RegOut::Written(9)),
            ),
            op(
                0,
                25,
                Some(35),
                RegIn::Get,
                Some(RegOut::Found { value: 3, version: 9 }),
            ),
        ];
        assert!(linearizable(&RegisterModel, &history));
    }

    #[test]
    fn register_rejects_a_stale_read_after_a_completed_write() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                RegIn::Put {
                    value: 1,
                    if_version: 0,
                },
                Some(RegOut::Written(1)),
            ),
            op(
                0,
                11,
                Some(20),
                RegIn::Put {
                    value: 2,
                    if_version: 1,
                },
                Some(RegOut::Written(2)),
            ),
            op(
                1,
                21,
                Some(30),
                RegIn::Get,
                Some(RegOut::Found { value: 1, version: 1 }),
            ),
        ];
        assert!(!linearizable(&RegisterModel, &history));
        let missing = vec![
            op(
                0,
                0,
                Some(10),
                RegIn::Put {
                    value: 1,
                    if_version: 0,
                },
                Some(RegOut::Written(1)),
            ),
            op(1, 11, Some(12), RegIn::Get, Some(RegOut::Missing)),
        ];
        assert!(!linearizable(&RegisterModel, &missing));
    }

    #[test]
    fn register_rejects_two_cas_wins_from_one_version() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                RegIn::Put {
                    value: 1,
                    if_version: 0,
                },
                Some(RegOut::Written(1)),
            ),
            op(
                1,
                11,
                Some(20),
                RegIn::Put {
                    value: 2,
                    if_version: 1,
                },
                Some(RegOut::Written(2)),
            ),
            op(
                2,
                12,
                Some(21),
                RegIn::Put {
                    value: 3,
                    if_version: 1,
                },
                Some(RegOut::Written(3)),
            ),
        ];
        assert!(!linearizable(&RegisterModel, &history));
    }

    #[test]
    fn register_unknown_write_is_seen_or_not() {
        // Client 0 was killed while writing value 2: a reader may see it (with the version
        // it got) or not, but once seen it cannot be unseen.
        let seen_then_unseen = vec![
            op(
                0,
                0,
                Some(5),
                RegIn::Put {
                    value: 1,
                    if_version: 0,
                },
                Some(RegOut::Written(1)),
            ),
            op(
                0,
                6,
                None,
                RegIn::Put {
                    value: 2,
                    if_version: 1,
                },
                None,
            ),
            op(
                1,
                10,
                Some(12),
                RegIn::Get,
                Some(RegOut::Found { value: 2, version: 4 }),
            ),
            op(
                1,
                13,
                Some(15),
                RegIn::Get,
                Some(RegOut::Found { value: 1, version: 1 }),
            ),
        ];
        assert!(!linearizable(&RegisterModel, &seen_then_unseen));
        let seen = &seen_then_unseen[..3];
        assert!(linearizable(&RegisterModel, seen));
        let mut unseen = seen_then_unseen[..2].to_vec();
        unseen.push(op(
            1,
            10,
            Some(12),
            RegIn::Get,
            Some(RegOut::Found { value: 1, version: 1 }),
        ));
        assert!(linearizable(&RegisterModel, &unseen));
    }

    #[test]
    fn an_exhausted_budget_is_reported_not_passed() {
        // Many concurrent refused acquires on a held lock: trivial, but not in 3 steps.
        let mut history = vec![op(
            0,
            0,
            Some(1),
            LockIn::Acquire { client: 0 },
            Some(LockOut::Granted(1)),
        )];
        for client in 1..20 {
            history.push(op(
                client,
                2,
                Some(100),
                LockIn::Acquire { client },
                Some(LockOut::Held),
            ));
        }
        assert!(matches!(check(&LockModel, &history, 3), Verdict::Exhausted { .. }));
        assert!(matches!(
            check(&LockModel, &history, BUDGET),
            Verdict::Linearizable { .. }
        ));
    }

    #[test]
    fn a_larger_concurrent_history_is_decided_quickly() {
        // 8 clients, 200 operations, heavily overlapping: refused acquires around a
        // sequence of holders handing over the lock. The memoized search decides it in a
        // number of steps close to the number of operations.
        let mut history = Vec::new();
        let mut t = 0;
        let mut token = 0;
        for round in 0..25u32 {
            let holder = round % 8;
            token += 1;
            history.push(op(
                holder,
                t,
                Some(t + 10),
                LockIn::Acquire { client: holder },
                Some(LockOut::Granted(token)),
            ));
            for other in (0..8).filter(|&c| c != holder).take(5) {
                history.push(op(
                    other,
                    t + 11,
                    Some(t + 40),
                    LockIn::Acquire { client: other },
                    Some(LockOut::Held),
                ));
            }
            history.push(op(
                holder,
                t + 20,
                Some(t + 30),
                LockIn::Renew { token },
                Some(LockOut::Ok),
            ));
            history.push(op(
                holder,
                t + 41,
                Some(t + 50),
                LockIn::Release { token },
                Some(LockOut::Ok),
            ));
            t += 51;
        }
        assert_eq!(history.len(), 200);
        let verdict = check(&LockModel, &history, BUDGET);
        assert!(matches!(verdict, Verdict::Linearizable { .. }), "{verdict:?}");
        assert!(verdict.steps() < 5_000, "{} steps", verdict.steps());
    }
}
