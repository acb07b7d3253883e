//! The per-server verdict machine: turns a stream of check results into up/down
//! transitions with HAProxy-style `fall`/`rise` thresholds.
//!
//! It is pure (no clock, no I/O), so the thresholds are tested on their own. A server
//! starts up, as in HAProxy: the data plane's passive detection covers the time before
//! the first checks, and a node restart must not take every server out of rotation.

use std::fmt;

/// A change of a server's health verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// `rise` consecutive checks passed while the server was down.
    Up,
    /// `fall` consecutive checks failed while the server was up.
    Down,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
        })
    }
}

/// One server's check history, reduced to the streaks the thresholds need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdicts {
    fall: u32,
    rise: u32,
    consecutive_ok: u32,
    consecutive_fail: u32,
    up: bool,
}

impl Verdicts {
    /// A server that is up, going down after `fall` consecutive failures and back up after
    /// `rise` consecutive passes. A threshold of 0 (refused by config validation) acts as 1.
    pub fn new(fall: u32, rise: u32) -> Self {
        Self { fall: fall.max(1), rise: rise.max(1), consecutive_ok: 0, consecutive_fail: 0, up: true }
    }

    /// Whether the server is currently considered up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The failure threshold in effect.
    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// The pass threshold in effect.
    pub fn rise(&self) -> u32 {
        self.rise
    }

    /// Records one check result; returns the transition it causes, if any. A transition is
    /// returned once: further results in the same direction extend the streak silently.
    pub fn record(&mut self, passed: bool) -> Option<Transition> {
        if passed {
            self.consecutive_fail = 0;
            self.consecutive_ok = self.consecutive_ok.saturating_add(1);
            if !self.up && self.consecutive_ok >= self.rise {
                self.up = true;
                return Some(Transition::Up);
            }
        } else {
            self.consecutive_ok = 0;
            self.consecutive_fail = self.consecutive_fail.saturating_add(1);
            if self.up && self.consecutive_fail >= self.fall {
                self.up = false;
                return Some(Transition::Down);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results` and collects every transition with the index that caused it.
    fn run(verdicts: &mut Verdicts, results: &[bool]) -> Vec<(usize, Transition)> {
        results
            .iter()
            .enumerate()
            .filter_map(|(i, &passed)| verdicts.record(passed).map(|t| (i, t)))
            .collect()
    }

    #[test]
    fn starts_up_and_passes_change_nothing() {
        let mut verdicts = Verdicts::new(2, 2);
        assert!(verdicts.is_up());
        assert!(run(&mut verdicts, &[true; 10]).is_empty());
        assert!(verdicts.is_up());
    }

    #[test]
    fn goes_down_exactly_at_fall_failures_and_only_once() {
        let mut verdicts = Verdicts::new(3, 2);
        assert_eq!(run(&mut verdicts, &[false; 6]), vec![(2, Transition::Down)]);
        assert!(!verdicts.is_up());
    }

    #[test]
    fn comes_back_exactly_at_rise_passes_and_only_once() {
        let mut verdicts = Verdicts::new(1, 3);
        assert_eq!(verdicts.record(false), Some(Transition::Down));
        assert_eq!(run(&mut verdicts, &[true; 6]), vec![(2, Transition::Up)]);
        assert!(verdicts.is_up());
    }

    #[test]
    fn a_pass_resets_the_failure_streak_and_a_failure_the_pass_streak() {
        let mut verdicts = Verdicts::new(2, 2);
        assert!(run(&mut verdicts, &[false, true, false, true]).is_empty());
        assert_eq!(run(&mut verdicts, &[false, false]), vec![(1, Transition::Down)]);
        assert!(run(&mut verdicts, &[true, false, true, false]).is_empty());
        assert_eq!(run(&mut verdicts, &[true, true]), vec![(1, Transition::Up)]);
    }

    #[test]
    fn flapping_never_transitions_with_fall_and_rise_of_two() {
        let alternating: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        let mut up = Verdicts::new(2, 2);
        assert!(run(&mut up, &alternating).is_empty());
        assert!(up.is_up());

        let mut down = Verdicts::new(2, 2);
        run(&mut down, &[false, false]);
        assert!(run(&mut down, &alternating).is_empty());
        assert!(!down.is_up());
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut verdicts = Verdicts::new(0, 0);
        assert_eq!((verdicts.fall(), verdicts.rise()), (1, 1));
        assert_eq!(verdicts.record(false), Some(Transition::Down));
        assert_eq!(verdicts.record(true), Some(Transition::Up));
    }
}
