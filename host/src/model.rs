//! caulk's model of findings, plans and outcomes: the records of the newest
//! WIT version. Plugins built against older versions are adapted to these.

pub use crate::plugin::bindings::v0_2::caulk::plugin::types::{
    Error, ErrorKind, Finding, Findings, FixStatus, OsInfo, PackageClass, Platform, PluginInfo, Severity,
};
pub use crate::plugin::bindings::v0_2::updater::exports::caulk::plugin::updater::{
    Answer, CacheMount, Check, Command, CommandOutput, ExecContext, Fact, FileEntry, FileKind, IndexQuery,
    Options, OsRelease, Outcome, OutcomeStatus, PassedOver, PatchLevel, PatchPlan, Phase, PlanRequest,
    ProbeRequest, PublishedVersion, Question, QuestionKind, SelectedUpdate, SkippedUpdate, Step, StepResult,
    Target, Tooling, Update, UpdateMode, VerifyRequest, VersionTarget,
};
