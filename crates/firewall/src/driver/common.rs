//! Helpers the drivers share.

use std::collections::HashMap;

use crate::rules::Family;

/// Listings seen right after a successful apply that differ from our rendering only because
/// the installed tool prints rules differently: expected listing -> accepted listing.
#[derive(Debug, Default)]
pub(super) struct Accepted(std::sync::Mutex<HashMap<String, String>>);

impl Accepted {
    /// True when `found` is `expected` or the form this tool was seen to print it in.
    pub(super) fn matches(&self, expected: &str, found: &str) -> bool {
        if expected == found {
            return true;
        }
        let accepted = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.get(expected).is_some_and(|a| a == found)
    }

    /// Remember `found` as this tool's way of printing `expected`.
    pub(super) fn accept(&self, expected: String, found: String) {
        let mut accepted = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        accepted.insert(expected, found);
    }
}

pub(super) fn idx(family: Family) -> usize {
    match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms_are_remembered() {
        let a = Accepted::default();
        assert!(a.matches("x", "x"));
        assert!(!a.matches("x", "y"));
        a.accept("x".into(), "y".into());
        assert!(a.matches("x", "y"));
        assert!(!a.matches("x", "z"));
    }
}
