//! The SQLite schema: every primitive's migrations (each declared beside its code), in the
//! order they apply. `PRAGMA user_version` records the version reached. A new primitive
//! adds its list here (one line).

use crate::schema::Migration;

/// Every primitive's steps; within one version they run in this order.
pub(super) const PRIMITIVES: &[&[Migration]] = &[
    super::lease::MIGRATIONS,
    super::kv::MIGRATIONS,
    super::log::MIGRATIONS,
    super::notify::MIGRATIONS,
    super::loops::MIGRATIONS,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_version_up_to_the_current_one_has_a_step() {
        crate::schema::check(super::PRIMITIVES);
    }
}
