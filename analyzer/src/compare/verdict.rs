//! The gate's verdicts and how they combine.
//!
//! Verdicts are ordered by how much they should worry a release manager: `Pass < Warn <
//! Inconclusive < Fail`. Combining objectives takes the worst, so one failing objective fails the
//! gate, and an objective without enough data keeps the gate from passing (it never passes by
//! accident) without claiming a regression. Whether an inconclusive gate blocks the release is
//! the contract's policy ("no data" fails closed by default), not this module's.

use std::fmt;

/// The outcome of one comparison or of a whole gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Within the objective.
    Pass,
    /// Within the objective but past its warning level; never blocks unless asked to.
    Warn,
    /// Not enough data, or the evidence does not decide; see the reason beside it.
    Inconclusive,
    /// The objective is violated.
    Fail,
}

impl Verdict {
    /// The worse of two verdicts.
    pub fn worse(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The worst of several verdicts; [`Verdict::Inconclusive`] when there are none (nothing
    /// was checked, so nothing passed).
    pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().max().unwrap_or(Verdict::Inconclusive)
    }

    /// Lowercase name, as printed in reports: `pass`, `warn`, `inconclusive`, `fail`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Fail => "fail",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not one of the four verdicts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a verdict; expected pass, warn, inconclusive or fail")]
pub struct UnknownVerdict(pub String);

impl std::str::FromStr for Verdict {
    type Err = UnknownVerdict;

    /// The lowercase names [`Verdict::as_str`] writes.
    fn from_str(text: &str) -> Result<Verdict, UnknownVerdict> {
        [Verdict::Pass, Verdict::Warn, Verdict::Inconclusive, Verdict::Fail]
            .into_iter()
            .find(|v| v.as_str() == text)
            .ok_or_else(|| UnknownVerdict(text.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_words_read_back() {
        for v in [Verdict::Pass, Verdict::Warn, Verdict::Inconclusive, Verdict::Fail] {
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(v));
        }
        assert_eq!("Pass".parse::<Verdict>(), Err(UnknownVerdict("Pass".into())));
        assert!("maybe".parse::<Verdict>().unwrap_err().to_string().contains("\"maybe\" is not a verdict"));
    }
}
