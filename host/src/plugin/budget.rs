//! Budgets: how much a plugin's questions may make the host read, run and
//! hold. Every plugin has them, built-ins too: a plugin asking for too much,
//! or a hostile image whose files a fair question matches, stops the run
//! with a plugin error instead of growing caulk's memory.

/// The budgets of every updater, per round of questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Bytes of file answers (contents, paths and link targets) per round.
    pub file_bytes: u64,
    /// New questions per round.
    pub questions: usize,
    /// Bytes of stdout per command a question runs (stderr keeps its last 64 KiB).
    pub output_bytes: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Self { file_bytes: 64 << 20, questions: 1000, output_bytes: 16 << 20 }
    }
}

/// Which budget, for messages: what it counts and the flag that raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    FileBytes,
    Questions,
    OutputBytes,
}

impl Budget {
    pub fn flag(self) -> &'static str {
        match self {
            Self::FileBytes => "--plugin-file-budget",
            Self::Questions => "--plugin-question-budget",
            Self::OutputBytes => "--plugin-output-budget",
        }
    }

    /// The budget's size in `budgets`, for people.
    pub fn describe(self, budgets: &Budgets) -> String {
        match self {
            Self::FileBytes => format!("{} of file contents per round of questions", mib(budgets.file_bytes)),
            Self::Questions => format!("{} questions per round", budgets.questions),
            Self::OutputBytes => format!("{} of output per command", mib(budgets.output_bytes as u64)),
        }
    }
}

/// Bytes as MiB, with a fraction only when it is not whole.
pub fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        #[allow(clippy::cast_precision_loss)] // for people, not for sums
        let value = bytes as f64 / f64::from(1 << 20);
        format!("{value:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(mib(64 << 20), "64 MiB");
        assert_eq!(mib(3 << 19), "1.5 MiB");
        assert_eq!(Budget::Questions.describe(&Budgets::default()), "1000 questions per round");
    }
}
