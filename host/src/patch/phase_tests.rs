//! The pipeline's phases on their own: the execute phase against a test
//! engine whose steps do what each test scripts, and the judgement of the
//! verified rows.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use caulk_exec::{CancelToken, MergedReader, Probe, ProbeOutput, Step, StepOutcome, Stream};

use super::{
    Changes, Observer, PatchError, PatchSummary, RowStatus, Workspace, after_both, execute, judge, summary,
};

/// What the test engine's next step does.
enum Then {
    Succeed,
    Fail(i32),
    /// An engine error that is not about the step's own exit.
    Break(caulk_exec::Error),
}

#[derive(Default)]
struct Script {
    next: VecDeque<Then>,
    ran: Vec<String>,
}

impl Workspace for Script {
    fn reader(&self) -> MergedReader {
        MergedReader::new(Vec::new())
    }

    fn probe(&self, _probe: &Probe) -> caulk_exec::Result<ProbeOutput> {
        unreachable!("the execute phase asks no questions")
    }

    fn run_step(
        &mut self,
        step: &Step,
        on_output: &mut dyn FnMut(Stream, &str),
    ) -> caulk_exec::Result<StepOutcome> {
        self.ran.push(step.summary.clone());
        on_output(Stream::Stdout, &format!("running {}", step.summary));
        let outcome = |code: i32| StepOutcome {
            summary: step.summary.clone(),
            exit_code: Some(code),
            signal: None,
            duration: Duration::from_millis(5),
            stderr_tail: String::new(),
            timed_out: false,
            limit_hit: None,
        };
        match self.next.pop_front().expect("a scripted result per step") {
            Then::Succeed => Ok(outcome(0)),
            Then::Fail(code) => Err(caulk_exec::Error::StepFailed {
                step: step.summary.clone(),
                status: format!("exit {code}"),
                outcome: Box::new(outcome(code)),
            }),
            Then::Break(e) => Err(e),
        }
    }

    fn run_steps(
        &mut self,
        steps: &[Step],
        observer: &mut dyn Observer,
        cancel: &CancelToken,
    ) -> Result<Vec<StepOutcome>, PatchError> {
        execute(self, steps, observer, cancel)
    }

    fn finish(self: Box<Self>) -> Result<Changes, PatchError> {
        unreachable!("the execute phase leaves the diff to the layer phase")
    }
}

#[derive(Default)]
struct Seen {
    events: Vec<String>,
}

impl Observer for Seen {
    fn step_started(&mut self, index: usize, total: usize, summary: &str) {
        self.events.push(format!("start {}/{total} {summary}", index + 1));
    }
    fn step_output(&mut self, _stream: Stream, line: &str) {
        self.events.push(line.to_owned());
    }
    fn step_finished(&mut self, outcome: &StepOutcome) {
        self.events.push(format!("done {} {:?}", outcome.summary, outcome.exit_code));
    }
}

fn steps(names: &[&str]) -> Vec<Step> {
    names.iter().map(|n| Step::new(*n, ["true"])).collect()
}

fn script(then: Vec<Then>) -> Script {
    Script { next: then.into(), ran: Vec::new() }
}

#[test]
fn every_step_runs_in_order_and_is_reported() {
    let mut engine = script(vec![Then::Succeed, Then::Succeed]);
    let mut seen = Seen::default();
    let outcomes =
        execute(&mut engine, &steps(&["update", "install"]), &mut seen, &CancelToken::new()).unwrap();
    assert_eq!(engine.ran, ["update", "install"]);
    assert_eq!(outcomes.iter().map(|o| o.exit_code).collect::<Vec<_>>(), [Some(0), Some(0)]);
    assert_eq!(
        seen.events,
        [
            "start 1/2 update",
            "running update",
            "done update Some(0)",
            "start 2/2 install",
            "running install",
            "done install Some(0)"
        ]
    );
}

#[test]
fn a_failed_step_ends_the_run_and_its_outcome_is_kept_for_verify() {
    let mut engine = script(vec![Then::Succeed, Then::Fail(100)]);
    let mut seen = Seen::default();
    let outcomes =
        execute(&mut engine, &steps(&["update", "install", "clean"]), &mut seen, &CancelToken::new())
            .unwrap();
    assert_eq!(engine.ran, ["update", "install"], "nothing runs after a failed step");
    assert_eq!(outcomes.last().map(|o| o.exit_code), Some(Some(100)));
    assert_eq!(seen.events.last().map(String::as_str), Some("done install Some(100)"));
}

#[test]
fn an_engine_error_fails_the_run() {
    let mut engine =
        script(vec![Then::Break(caulk_exec::Error::Cancelled { during: "during install".into() })]);
    let err = execute(&mut engine, &steps(&["install", "clean"]), &mut Seen::default(), &CancelToken::new())
        .unwrap_err();
    assert!(matches!(&err, PatchError::Cancelled { during } if during == "during install"), "{err:?}");
    assert_eq!(engine.ran, ["install"]);
}

#[test]
fn a_cancelled_run_starts_no_step() {
    let mut engine = script(Vec::new());
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = execute(&mut engine, &steps(&["install"]), &mut Seen::default(), &cancel).unwrap_err();
    assert!(matches!(err, PatchError::Cancelled { .. }), "{err:?}");
    assert!(engine.ran.is_empty());
}

/// A summary with one OS package per status.
fn rows(statuses: &[RowStatus]) -> PatchSummary {
    let rows = statuses
        .iter()
        .enumerate()
        .map(|(i, status)| summary::tests::row(&format!("pkg{i}"), None, "1.0", "1.1", *status))
        .collect();
    summary::tests::summary(rows, summary::Result::NothingToPatch)
}

#[test]
fn a_failed_update_stops_the_run_unless_errors_are_ignored() {
    use RowStatus::{Failed, LeftOut, Patched};
    let summary = rows(&[Patched, Failed, LeftOut]);
    let err = judge(summary.clone(), false, Some(Path::new("vex.json")), Instant::now()).unwrap_err();
    let PatchError::UpdatesFailed { failed, total, summary: told } = &err else { panic!("{err:?}") };
    assert_eq!((*failed, *total), (1, 2), "left-out packages are not counted as updates");
    assert_eq!(told.result, summary::Result::Failed);
    assert!(told.vex_not_written.as_deref().is_some_and(|w| w.contains("no image was written")));

    let kept = judge(summary, true, None, Instant::now()).unwrap();
    assert!(matches!(kept, ControlFlow::Continue(s) if s.count(Patched) == 1));
}

#[test]
fn ignoring_errors_still_fails_when_nothing_worked() {
    let err = judge(rows(&[RowStatus::Failed]), true, None, Instant::now()).unwrap_err();
    assert!(matches!(err, PatchError::UpdatesFailed { failed: 1, total: 1, .. }), "{err:?}");
}

#[test]
fn nothing_patched_ends_the_run_without_an_image() {
    let flow =
        judge(rows(&[RowStatus::LeftOut]), false, Some(Path::new("vex.json")), Instant::now()).unwrap();
    let ControlFlow::Break(done) = flow else { panic!("an image would be written with nothing patched") };
    assert_eq!(done.result, summary::Result::NothingToPatch);
    assert!(done.vex_not_written.as_deref().is_some_and(|w| w.contains("nothing was patched")));
}

#[test]
fn verification_and_the_layer_written_meanwhile_keep_both_errors() {
    let err = |text: &str| PatchError::Destination(text.to_owned());
    let layer = after_both(Ok(()), Some(Ok::<u8, _>(7))).unwrap();
    assert!(matches!(layer, Some(Ok(7))));
    // A failed write with a passed verification is the caller's to judge.
    let layer = after_both(Ok(()), Some(Err::<u8, _>(err("disk full")))).unwrap();
    assert!(matches!(layer, Some(Err(_))));
    assert!(matches!(after_both(Ok(()), None::<Result<u8, _>>), Ok(None)));
    let only = after_both(Err(err("probe failed")), Some(Ok::<u8, _>(7))).unwrap_err();
    assert_eq!(only.to_string(), "destination: probe failed");
    let both = after_both(Err(err("probe failed")), Some(Err::<u8, _>(err("disk full")))).unwrap_err();
    assert_eq!(
        both.to_string(),
        "destination: probe failed; writing the layer at the same time also failed: destination: disk full"
    );
}
