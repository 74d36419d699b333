//! Circuit breakers: their default options, and the rule that every step using
//! a breaker gives it the same options (a breaker is shared by name).

use std::collections::HashMap;
use std::time::Duration;

/// Failures in a row that open a breaker, unless its options say otherwise.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;

/// How long an open breaker waits before it lets a trial call through, unless
/// its options say otherwise.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(30);

/// The options each breaker was given, and by whom first.
///
/// ```
/// use sagaflow_rules::breaker::BreakerUses;
///
/// let mut uses = BreakerUses::new();
/// assert_eq!(uses.give("payments", (5, 30), "charge"), Ok(()));
/// assert_eq!(uses.give("payments", (5, 30), "refund"), Ok(()));
/// assert_eq!(uses.give("payments", (3, 30), "capture"), Err(&"charge"));
/// ```
#[derive(Debug)]
pub struct BreakerUses<O, U> {
    seen: HashMap<String, (O, U)>,
}

impl<O, U> Default for BreakerUses<O, U> {
    fn default() -> Self {
        BreakerUses { seen: HashMap::new() }
    }
}

impl<O: PartialEq, U> BreakerUses<O, U> {
    /// No breaker used yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `user` gives `breaker` these `options`. `Err` names the user
    /// that gave it other options first.
    pub fn give(&mut self, breaker: &str, options: O, user: U) -> Result<(), &U> {
        if !self.seen.contains_key(breaker) {
            self.seen.insert(breaker.to_owned(), (options, user));
            return Ok(());
        }
        match &self.seen[breaker] {
            (first, _) if *first == options => Ok(()),
            (_, first_user) => Err(first_user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_user_of_a_breaker_sets_its_options() {
        let mut uses = BreakerUses::new();
        assert_eq!(uses.give("a", 1, "x"), Ok(()));
        assert_eq!(uses.give("b", 2, "y"), Ok(()), "breakers are apart by name");
        assert_eq!(uses.give("a", 1, "z"), Ok(()), "the same options agree");
        assert_eq!(uses.give("a", 2, "w"), Err(&"x"), "other options name the first user");
    }
}
