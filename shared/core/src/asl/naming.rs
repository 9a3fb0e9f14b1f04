//! State names into step ids, by one rule: every character a step id may not hold (anything but
//! ASCII letters, digits, `_` and `-`) becomes `_`; an empty result is `state`; a name whose id
//! is already taken gets `_2`, `_3`, ... (in the order the states are written). Helper steps the
//! importer adds take their state's id and a suffix (`_out`, `_catch`, ...) by the same rule.

use std::collections::HashSet;

/// The id a state name maps to before clashes are numbered.
pub fn base_id(name: &str) -> String {
    let id: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if id.is_empty() { "state".to_owned() } else { id }
}

/// The ids given out so far in one workflow.
#[derive(Debug, Default)]
pub(crate) struct Names {
    used: HashSet<String>,
}

impl Names {
    /// A fresh id for `name`: its [`base_id`], numbered when taken.
    pub fn claim(&mut self, name: &str) -> String {
        let base = base_id(name);
        let mut id = base.clone();
        let mut n = 2;
        while self.used.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(id.clone());
        id
    }
}

/// How an expression reads step `id`: `.steps.id`, or `.steps["id"]` when the id is not a jq
/// identifier (it holds a `-` or starts with a digit).
pub fn step_ref(id: &str) -> String {
    let ident = id.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident { format!(".steps.{id}") } else { format!(".steps[\"{id}\"]") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_ids_by_one_rule() {
        assert_eq!(base_id("Event Router"), "Event_Router");
        assert_eq!(base_id("Approved?"), "Approved_");
        assert_eq!(base_id("Reservation Successful!"), "Reservation_Successful_");
        assert_eq!(base_id("Validate, Transform, and Migrate Items"), "Validate__Transform__and_Migrate_Items");
        assert_eq!(base_id("already-fine_1"), "already-fine_1");
        assert_eq!(base_id("Ünïcode"), "_n_code");
        assert_eq!(base_id(""), "state");
    }

    #[test]
    fn clashes_are_numbered_in_order() {
        let mut n = Names::default();
        assert_eq!(n.claim("a b"), "a_b");
        assert_eq!(n.claim("a?b"), "a_b_2");
        assert_eq!(n.claim("a/b"), "a_b_3");
        assert_eq!(n.claim("a_b_2"), "a_b_2_2");
    }

    #[test]
    fn references_quote_ids_that_are_not_identifiers() {
        assert_eq!(step_ref("a_b"), ".steps.a_b");
        assert_eq!(step_ref("a-b"), ".steps[\"a-b\"]");
        assert_eq!(step_ref("1a"), ".steps[\"1a\"]");
    }
}
