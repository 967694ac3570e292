//! The host's probe loop, for driving an updater natively in tests.

use crate::Updater;
use crate::update::{Fact, Options, Phase, ProbeRequest, Question, Target, Update};

/// More rounds than this means the plugin keeps asking: the host gives up
/// there too.
pub const MAX_ROUNDS: usize = 30;

/// Drives `U::probe` in `phase` as the host does: ask, answer each question with
/// `answer`, ask again with the facts so far, until the plugin asks nothing
/// new. Returns every question with its fact, and how many rounds asked
/// something.
///
/// # Panics
/// When the probe fails, asks a question it already had answered, or is
/// still asking after [`MAX_ROUNDS`]: each is a plugin bug a test should
/// show.
pub fn probe_rounds<U: Updater>(
    phase: Phase,
    target: Target,
    updates: Vec<Update>,
    options: Options,
    mut answer: impl FnMut(&Question) -> Fact,
) -> (Vec<(Question, Fact)>, usize) {
    let mut request =
        ProbeRequest { phase, target, updates, selected: Vec::new(), options, facts: Vec::new() };
    let mut asked: Vec<(Question, Fact)> = Vec::new();
    for round in 0..MAX_ROUNDS {
        request.facts = asked.iter().map(|(_, fact)| fact.clone()).collect();
        let questions = U::probe(&request).unwrap_or_else(|e| panic!("probe round {round} failed: {e:?}"));
        if questions.is_empty() {
            return (asked, round);
        }
        for question in questions {
            assert!(
                !asked.iter().any(|(_, f)| f.question_id == question.id),
                "round {round} asked {} again",
                question.id
            );
            let fact = answer(&question);
            asked.push((question, fact));
        }
    }
    panic!("the plugin kept asking after {MAX_ROUNDS} rounds");
}
