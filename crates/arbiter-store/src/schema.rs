//! Schema migrations, declared by each primitive beside its code (`sqlite/<primitive>.rs`,
//! `postgres/<primitive>.rs`: a `MIGRATIONS` list) and put in order here, once for both
//! backends ([`primitives!`]). A version's steps run in the order of that list, so a
//! version that touched several primitives (version 1: leases, then keys) produces the
//! same schema, statement for statement, as when it was one text. Never edit a step that
//! has shipped; add one at the next version (and raise [`crate::SCHEMA_VERSION`]).

/// Every primitive's steps, for the backend's `mod.rs` that invokes it (each backend has a
/// module per primitive with a `MIGRATIONS` list); within one version they run in this
/// order. A new primitive adds its line here.
macro_rules! primitives {
    () => {
        &[
            lease::MIGRATIONS,
            kv::MIGRATIONS,
            log::MIGRATIONS,
            notify::MIGRATIONS,
            loops::MIGRATIONS,
            limit::MIGRATIONS,
            token::MIGRATIONS,
            queue::MIGRATIONS,
        ]
    };
}
pub(crate) use primitives;

/// One step of a primitive's schema: the statements that bring its tables to `version`.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) sql: &'static str,
}

/// The steps that bring a store at schema version `from` to [`crate::SCHEMA_VERSION`], in the
/// order they run: by version, then by the order of `primitives`, then as each primitive
/// lists them.
pub(crate) fn pending(primitives: &[&'static [Migration]], from: i64) -> Vec<&'static Migration> {
    let mut steps: Vec<&'static Migration> = primitives
        .iter()
        .flat_map(|steps| steps.iter())
        .filter(|step| step.version > from)
        .collect();
    // Stable: steps of one version keep the primitives' order.
    steps.sort_by_key(|step| step.version);
    steps
}

/// Checks a backend's list: every version from 1 to [`crate::SCHEMA_VERSION`] has a step, none is
/// later. The backends' unit tests call it.
#[cfg(test)]
pub(crate) fn check(primitives: &[&'static [Migration]]) {
    let steps = pending(primitives, 0);
    let versions: std::collections::BTreeSet<i64> = steps.iter().map(|step| step.version).collect();
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        (1..=crate::SCHEMA_VERSION).collect::<Vec<_>>(),
        "every schema version up to SCHEMA_VERSION has a step, and none is later"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_up_to_the_current_one_has_a_step_on_each_backend() {
        check(crate::sqlite::MIGRATIONS);
        check(crate::postgres::MIGRATIONS);
    }

    #[test]
    fn steps_run_by_version_then_in_primitive_order() {
        static A: &[Migration] = &[Migration { version: 1, sql: "a1" }, Migration { version: 3, sql: "a3" }];
        static B: &[Migration] = &[Migration { version: 1, sql: "b1" }, Migration { version: 2, sql: "b2" }];
        let order = |from| pending(&[A, B], from).iter().map(|s| s.sql).collect::<Vec<_>>();
        assert_eq!(order(0), ["a1", "b1", "b2", "a3"]);
        assert_eq!(order(1), ["b2", "a3"]);
        assert!(order(3).is_empty());
    }
}
