//! The host's probe loop, for driving an updater natively in tests.

use crate::update::{Fact, ProbeRequest, Question};
use crate::{MAX_PROBE_ROUNDS, Updater};

/// Drives `U::probe` as the host does: ask, answer each new question with
/// `answer`, ask again with the facts so far, until the plugin asks nothing
/// new. A question asked again is not answered again (the host keeps the
/// first answer). Returns every question with its fact, and how many
/// rounds asked something.
///
/// `request` sets the phase, target, updates, selections (the verify
/// phase's probes see the plan's) and options; its facts are replaced
/// round by round.
///
/// # Panics
/// When the probe fails, or is still asking something new after
/// [`MAX_PROBE_ROUNDS`] rounds, where the host gives up too: both are plugin
/// bugs a test should show.
pub fn probe_rounds<U: Updater>(
    mut request: ProbeRequest,
    mut answer: impl FnMut(&Question) -> Fact,
) -> (Vec<(Question, Fact)>, usize) {
    let mut asked: Vec<(Question, Fact)> = Vec::new();
    for round in 0..MAX_PROBE_ROUNDS {
        request.facts = asked.iter().map(|(_, fact)| fact.clone()).collect();
        let questions = U::probe(&request).unwrap_or_else(|e| panic!("probe round {round} failed: {e:?}"));
        let mut new = 0;
        for question in questions {
            if asked.iter().any(|(q, _)| q.id == question.id) {
                continue;
            }
            let fact = answer(&question);
            asked.push((question, fact));
            new += 1;
        }
        if new == 0 {
            return (asked, round);
        }
    }
    panic!("the plugin still asked new questions after {MAX_PROBE_ROUNDS} rounds, where caulk gives up");
}
