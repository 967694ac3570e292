//! An example third-party caulk updater, written only against `caulk-sdk`,
//! for a toy ecosystem small enough to read in ten minutes. Copy it to start
//! an updater of your own (or run `caulk plugins new updater NAME`).
//!
//! The toy ecosystem: an image lists its installed "toy" packages in one
//! file, `/etc/toy/packages`, one `NAME VERSION` per line (`packages` beside
//! this crate's manifest is a sample). Names are lowercase letters, digits
//! and `-`; versions are SemVer (`1.2.3`). Findings of ecosystem `toy` (the
//! example CSV scanner reads them from a `caulk-csv v1` report) say which
//! packages are vulnerable and which versions fix them.
//!
//! The host drives an updater in four calls; each is a pure function of what
//! the host hands it, so every one of them is tested natively below:
//!
//! 1. `probe` (phase plan): which files to read, commands to run, indexes to
//!    ask. The host answers with facts and calls again until nothing new is
//!    asked. Here: read `/etc/toy/packages`.
//! 2. `plan`: from the report's updates and the facts, which updates to make
//!    (selected), which not and why (skipped), and the steps that make them.
//!    Here: one `sed` command rewriting the lines of the selected packages.
//! 3. The host runs the steps in a sandbox on top of the image and captures
//!    what they changed as one new layer.
//! 4. `probe` (phase verify) and `verify`: the same file, read back from the
//!    patched image, decides what each update came to, and per vulnerability
//!    whether it is fixed. The host has no version rules for `toy`, so these
//!    verdicts are what puts a vulnerability into the VEX document.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use caulk_sdk::Updater;
use caulk_sdk::facts::FactsExt;
use caulk_sdk::rules::{self, Finding, Pick};
use caulk_sdk::types::{Error, ErrorKind, PackageClass, PluginInfo};
use caulk_sdk::update::{
    Check, Command, Fact, Options, Outcome, OutcomeStatus, PatchPlan, PlanRequest, ProbeRequest, Question,
    SelectedUpdate, SkippedUpdate, Step, Update, Verdict, VerifyRequest, VersionTarget,
};
// The toy ecosystem borrows npm's SemVer rules rather than inventing its own:
// they give both the order of versions and the release lines that
// `--library-patch-level` reasons about.
use caulk_sdk::version::npm::Version;

/// The ecosystem findings must name for this plugin to get them.
pub const ECOSYSTEM: &str = "toy";
/// The toy "package database".
pub const PACKAGES: &str = "/etc/toy/packages";
/// The id of our one question; the fact answering it carries it back.
const PACKAGES_PROBE: &str = "packages";

/// The plugin. Its methods are plain functions: tests call them directly.
pub struct Toy;

impl Updater for Toy {
    fn info() -> PluginInfo {
        PluginInfo {
            // The name chooses the plugin on the command line (`--plugin-opt
            // toy.KEY=VALUE`, `caulk plugins grant toy ...`).
            name: "toy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Updates the toy ecosystem's /etc/toy/packages (an example plugin)".into(),
            handles: vec![ECOSYSTEM.into()],
            // Empty: any OS. A library-class updater runs with `--pkg-types
            // library` and only from a report.
            os_families: Vec::new(),
            class: PackageClass::Library,
        }
    }

    fn probe(request: &ProbeRequest) -> Result<Vec<Question>, Error> {
        // Both phases want the same file: the unpatched one to plan, the
        // patched one to verify. Asking nothing once it is answered ends the
        // rounds.
        if request.facts.answered(PACKAGES_PROBE) {
            return Ok(Vec::new());
        }
        Ok(vec![Question::files(PACKAGES_PROBE, [PACKAGES])])
    }

    fn plan(request: &PlanRequest) -> Result<PatchPlan, Error> {
        check_options(&request.options)?;
        // In update-all mode (no report) the host gives a library updater no
        // updates; there is nothing to plan.
        if request.updates.is_empty() {
            return Ok(PatchPlan::default());
        }
        let installed = installed(&request.facts)?;
        let mut plan = PatchPlan::default();
        let mut rewrites: Vec<String> = Vec::new();
        for update in &request.updates {
            if plan.selected.iter().any(|s| s.name == update.name) {
                // The file has one line per name: a second update of it (from
                // another location) is already covered by the first.
                plan.skipped.push(SkippedUpdate::of(update, format!("{} is already selected", update.name)));
                continue;
            }
            match decide(update, &installed, &request.options) {
                Decision::Select(selected) => {
                    let VersionTarget::Exactly(version) = &selected.target else {
                        unreachable!("decide pins an exact version")
                    };
                    rewrites.push(rewrite(&selected.name, version));
                    plan.selected.push(selected);
                }
                Decision::Skip(skipped) => plan.skipped.push(skipped),
            }
        }
        if !rewrites.is_empty() {
            // argv only, never a shell: every element reaches sed as it is.
            // Names passed `valid_name` in `decide` (no regex metacharacter
            // in the pattern) and versions are printed from parsed SemVer
            // (no `/`, `&` or `\` in the replacement).
            let mut argv = vec!["sed".to_owned(), "-i".to_owned()];
            for expression in rewrites {
                argv.push("-e".to_owned());
                argv.push(expression);
            }
            argv.push(PACKAGES.to_owned());
            plan.steps.push(Step {
                summary: format!("rewrite {} entries of {PACKAGES}", plan.selected.len()),
                command: Command::new(argv),
                // One step edits the one file for every package, so no
                // single package's failure could be tolerated
                // (--ignore-errors): if sed fails, the run fails.
                tolerate_failure: false,
            });
        }
        Ok(plan)
    }

    fn verify(request: &VerifyRequest) -> Result<Vec<Outcome>, Error> {
        // An unreadable file fails each update with the reason, rather than
        // the whole run: the user still sees what was planned.
        let now = installed(&request.facts);
        let failed_step = request.steps.iter().find(|s| s.exit_code != 0);
        Ok(request.selected.iter().map(|s| outcome(s, now.as_ref(), failed_step)).collect())
    }
}

/// Refuses settings and index URLs rather than silently ignoring them: the
/// user asked for something this plugin cannot do.
pub fn check_options(options: &Options) -> Result<(), Error> {
    if let Some((key, value)) = options.settings.first() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("the toy updater has no setting {key:?} (from --plugin-opt toy.{key}={value})"),
        )
        .with_hint("leave out --plugin-opt toy.*"));
    }
    if !options.index_urls.is_empty() {
        return Err(Error::new(ErrorKind::Unsupported, "the toy ecosystem has no package index")
            .with_hint("leave out --index-url for toy"));
    }
    Ok(())
}

/// `/etc/toy/packages` as the facts show it: name to version. The file is
/// image content, so anything in it may be hostile: a bad line is an error
/// naming the line, never a panic.
pub fn installed(facts: &[Fact]) -> Result<BTreeMap<String, Version>, Error> {
    let Some(bytes) = facts.file(PACKAGES_PROBE) else {
        return Err(Error::new(ErrorKind::NotApplicable, format!("the image has no {PACKAGES}"))
            .with_hint("the toy updater patches images that list toy packages there"));
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::malformed(format!("{PACKAGES} is not UTF-8 (byte {})", e.valid_up_to())))?;
    let mut packages = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: String| Error::malformed(format!("{PACKAGES} line {line_no}: {problem}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, version] = fields[..] else {
            return Err(bad(format!("expected `NAME VERSION`, found {line:?}")));
        };
        if !valid_name(name) {
            return Err(bad(format!("{name:?} is not a toy package name")));
        }
        let version: Version =
            version.parse().map_err(|_| bad(format!("{name}: {version:?} is not a SemVer version")))?;
        if packages.insert(name.to_owned(), version).is_some() {
            return Err(bad(format!("{name} is listed twice")));
        }
    }
    Ok(packages)
}

/// Lowercase ASCII letters, digits and `-`, starting with a letter or digit:
/// the only names that reach a command.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// What `plan` does with one update.
enum Decision {
    Select(SelectedUpdate),
    Skip(SkippedUpdate),
}

/// Selects a fixed version for `update` by Copa's `--library-patch-level`
/// rules (`caulk_sdk::rules`), or says why not.
fn decide(update: &Update, installed: &BTreeMap<String, Version>, options: &Options) -> Decision {
    let skip = |reason: String| Decision::Skip(SkippedUpdate::of(update, reason));
    let name = &update.name;
    // The report is hostile too: its strings are checked before any of them
    // is put into a command.
    if !valid_name(name) {
        return skip(format!("{name:?} is not a toy package name"));
    }
    let Some(current) = installed.get(name) else {
        return skip(format!("{name} is not listed in {PACKAGES}"));
    };
    let fixed: Vec<Version> = update.fixed_versions.iter().filter_map(|v| v.parse().ok()).collect();
    if fixed.is_empty() {
        let listed = update.fixed_versions.join(", ");
        return skip(format!("{name}: no SemVer fixed version in [{listed}]"));
    }
    // The host groups findings per package; the rules want them per
    // vulnerability, each with the versions that fix it.
    let findings: Vec<Finding<Version>> = update
        .vulnerabilities
        .iter()
        .map(|id| Finding { vulnerability: id.clone(), fixed: fixed.clone() })
        .collect();
    match rules::pick(current, &findings, options.patch_level.into(), None) {
        Pick::AlreadyFixed { .. } => Decision::Skip(
            SkippedUpdate::of(update, format!("{name} {current} is already at or above every fixed version"))
                .installed(current.to_string())
                .already_fixed(),
        ),
        Pick::OutOfReach { reason, .. } => skip(format!("{name}: {reason}")),
        Pick::Chosen { order, rule, passed_over } => {
            // `order` is best first; a real updater would try the next one
            // when the first cannot be installed. A text file takes anything.
            let chosen = order[0].to_string();
            let mut selected =
                SelectedUpdate::of(update, current.to_string(), VersionTarget::Exactly(chosen)).because(rule);
            for (version, reason) in passed_over {
                selected = selected.passing_over(version.to_string(), reason);
            }
            Decision::Select(selected)
        }
    }
}

/// The `sed` expression that sets `name`'s line to `version`.
fn rewrite(name: &str, version: &str) -> String {
    format!("s/^[[:space:]]*{name}[[:space:]].*$/{name} {version}/")
}

/// What one selected update came to, judged from the file read back.
fn outcome(
    selected: &SelectedUpdate,
    now: Result<&BTreeMap<String, Version>, &Error>,
    failed_step: Option<&caulk_sdk::update::StepResult>,
) -> Outcome {
    let failed = |detail: String| Outcome::of(selected, None, OutcomeStatus::Failed, detail);
    let VersionTarget::Exactly(target) = &selected.target else {
        return failed("the toy updater plans exact versions only".into());
    };
    let packages = match now {
        Ok(packages) => packages,
        Err(e) => return failed(format!("reading {PACKAGES} back: {}", e.message)),
    };
    let Some(version) = packages.get(&selected.name) else {
        return failed(format!("{} is no longer listed in {PACKAGES}", selected.name));
    };
    let reached = target.parse::<Version>().is_ok_and(|t| *version >= t);
    let (status, mut detail) = if reached {
        (OutcomeStatus::Patched, String::new())
    } else {
        (OutcomeStatus::Failed, format!("{PACKAGES} still lists {} {version}", selected.name))
    };
    if let (false, Some(step)) = (reached, failed_step) {
        let _ = write!(detail, "; `{}` exited {}: {}", step.summary, step.exit_code, step.stderr_tail.trim());
    }
    let check = Check {
        name: format!("read back {PACKAGES}"),
        passed: reached,
        detail: format!("{} {version} (wanted {target})", selected.name),
    };
    let mut outcome =
        Outcome::of(selected, Some(version.to_string()), status, detail).with_checks(vec![check]);
    // One verdict per vulnerability, because caulk has no version rules for
    // `toy` and goes by these. Only when they are sure: the report merges
    // the fixes of all of an update's vulnerabilities, so when a fix above
    // the target was passed over (out of the patch level), reaching the target fixes
    // some vulnerabilities and not others, and which is which only the
    // report knows. Without verdicts caulk decides each from the report
    // itself, counting a vulnerability fixed when the new version is one
    // of its own fixes.
    let higher_fix_passed_over = selected.passed_over.iter().any(|p| {
        let (Ok(passed), Ok(target)) = (p.version.parse::<Version>(), target.parse::<Version>()) else {
            return true;
        };
        passed > target
    });
    if !reached || !higher_fix_passed_over {
        outcome.verdicts =
            selected.vulnerabilities.iter().map(|id| Verdict::new(id.clone(), reached)).collect();
    }
    outcome
}

// Only the wasm build exports the component interface; the native build
// (tests) uses the functions above directly. `image-commands`: the `sed`
// step runs in the image, which a user grants with
// `caulk plugins grant toy image-commands`.
#[cfg(target_family = "wasm")]
caulk_sdk::export_updater!(Toy, capabilities = ["image-commands"]);

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caulk_sdk::testing;
    use caulk_sdk::update::{Answer, Phase, QuestionKind, StepResult, Target};

    use super::*;

    /// A root file system with `/etc/toy/packages` holding `contents`.
    fn root(contents: impl AsRef<[u8]>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/toy")).unwrap();
        std::fs::write(dir.path().join("etc/toy/packages"), contents).unwrap();
        dir
    }

    /// The host's part of the probe rounds: answer every `files` question
    /// from `root`, as caulk would from the image.
    fn probe_rounds(root: &Path, phase: Phase, updates: &[Update], selected: &[SelectedUpdate]) -> Vec<Fact> {
        let request = ProbeRequest::new(phase, Target::default(), Options::default())
            .updates(updates.to_vec())
            .selected(selected.to_vec());
        let (asked, _) = testing::probe_rounds::<Toy>(request, |q| {
            let QuestionKind::Files(patterns) = &q.kind else { panic!("only files are asked") };
            Fact { question_id: q.id.clone(), answer: Answer::Files(testing::files(root, patterns)) }
        });
        asked.into_iter().map(|(_, fact)| fact).collect()
    }

    fn plan(root: &Path, updates: &[Update], options: Options) -> Result<PatchPlan, Error> {
        let facts = probe_rounds(root, Phase::Plan, updates, &[]);
        Toy::plan(&PlanRequest { target: Target::default(), updates: updates.to_vec(), options, facts })
    }

    const PACKAGES_FILE: &str = "# toy\nhello 1.0.0\nwidget   2.3.1\ngizmo 0.9.0\n";

    #[test]
    fn plans_one_sed_step_for_the_reachable_fixes_and_says_why_for_the_rest() {
        let root = root(PACKAGES_FILE);
        let updates = [
            Update::new("toy", "hello", "1.0.0").fixing("CVE-2099-0001", ["1.0.2", "2.0.0"]),
            Update::new("toy", "widget", "2.3.1").fixing("CVE-2099-0002", ["2.3.0"]),
            Update::new("toy", "gizmo", "0.9.0").fixing("CVE-2099-0003", ["1.0.0"]),
            Update::new("toy", "absent", "1.0.0").fixing("CVE-2099-0004", ["1.0.1"]),
            Update::new("toy", "x/y;rm", "1.0.0").fixing("CVE-2099-0005", ["1.0.1"]),
        ];
        let plan = plan(root.path(), &updates, Options::default()).unwrap();

        assert_eq!(plan.selected.len(), 1);
        let hello = &plan.selected[0];
        assert_eq!(hello.target, VersionTarget::Exactly("1.0.2".into()), "the patch level keeps 1.0.x");
        assert_eq!(hello.passed_over[0].version, "2.0.0");
        let reasons: Vec<(&str, &str, bool)> =
            plan.skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str(), s.already_fixed)).collect();
        assert!(reasons[0].0 == "widget" && reasons[0].2, "{reasons:?}");
        assert!(
            reasons[1].0 == "gizmo" && reasons[1].1.contains("--library-patch-level patch"),
            "{reasons:?}"
        );
        assert!(reasons[2].1.contains("not listed in /etc/toy/packages"), "{reasons:?}");
        assert!(reasons[3].1.contains("not a toy package name"), "{reasons:?}");

        let [step] = &plan.steps[..] else { panic!("one step: {:?}", plan.steps) };
        assert_eq!(
            step.command.argv,
            ["sed", "-i", "-e", "s/^[[:space:]]*hello[[:space:]].*$/hello 1.0.2/", "/etc/toy/packages"]
        );
    }

    #[test]
    fn the_planned_step_run_by_real_sed_verifies_with_a_verdict_per_vulnerability() {
        let root = root(PACKAGES_FILE);
        let updates = [
            Update::new("toy", "hello", "1.0.0")
                .fixing("CVE-2099-0001", ["1.0.2"])
                .fixing("CVE-2099-0006", ["1.0.1"]),
            Update::new("toy", "gizmo", "0.9.0").fixing("CVE-2099-0003", ["1.0.0"]),
        ];
        let options = Options { patch_level: caulk_sdk::update::PatchLevel::Major, ..Options::default() };
        let plan = plan(root.path(), &updates, options.clone()).unwrap();
        assert_eq!(plan.selected.len(), 2);

        // Run the step as the host would, with the image path under the root.
        let mut argv = plan.steps[0].command.argv.clone();
        let file = argv.pop().unwrap();
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .arg(root.path().join(file.trim_start_matches('/')))
            .status()
            .unwrap();
        assert!(status.success());

        let facts = probe_rounds(root.path(), Phase::Verify, &updates, &plan.selected);
        let steps = vec![StepResult {
            summary: plan.steps[0].summary.clone(),
            exit_code: 0,
            stderr_tail: String::new(),
        }];
        let request = VerifyRequest {
            target: Target::default(),
            options,
            selected: plan.selected.clone(),
            steps,
            facts,
        };
        let outcomes = Toy::verify(&request).unwrap();
        for outcome in &outcomes {
            assert_eq!(outcome.status, OutcomeStatus::Patched, "{outcome:?}");
            assert!(outcome.verdicts.iter().all(|v| v.fixed), "{outcome:?}");
        }
        assert_eq!(outcomes[0].to.as_deref(), Some("1.0.2"));
        assert_eq!(outcomes[0].verdicts.len(), 2);
        assert_eq!(outcomes[1].to.as_deref(), Some("1.0.0"));
        let text = std::fs::read_to_string(root.path().join("etc/toy/packages")).unwrap();
        assert_eq!(text, "# toy\nhello 1.0.2\nwidget   2.3.1\ngizmo 1.0.0\n", "other lines untouched");

        // Read back unchanged (the step did nothing): failed, nothing fixed.
        let unchanged = self::root(PACKAGES_FILE);
        let facts = probe_rounds(unchanged.path(), Phase::Verify, &updates, &plan.selected);
        let outcomes = Toy::verify(&VerifyRequest { facts, ..request }).unwrap();
        assert_eq!(outcomes[0].status, OutcomeStatus::Failed);
        assert!(outcomes[0].detail.contains("still lists hello 1.0.0"), "{:?}", outcomes[0]);
        assert!(outcomes[0].verdicts.iter().all(|v| !v.fixed));
    }

    #[test]
    fn a_target_below_a_passed_over_fix_leaves_the_verdicts_to_caulk() {
        // CVE-A is fixed only in 2.0.0, CVE-B in 1.0.1: the patch level
        // picks 1.0.1, which fixes B and not A; only the report can say so.
        let update =
            Update::new("toy", "hello", "1.0.0").fixing("CVE-A", ["2.0.0"]).fixing("CVE-B", ["1.0.1"]);
        let plan = plan(root(PACKAGES_FILE).path(), &[update], Options::default()).unwrap();
        let selected = &plan.selected[0];
        assert_eq!(selected.passed_over[0].version, "2.0.0", "{selected:?}");
        let now = BTreeMap::from([("hello".to_owned(), "1.0.1".parse::<Version>().unwrap())]);
        let reached = outcome(selected, Ok(&now), None);
        assert_eq!(reached.status, OutcomeStatus::Patched);
        assert!(reached.verdicts.is_empty(), "no verdict claims CVE-A fixed: {reached:?}");
        let stayed = BTreeMap::from([("hello".to_owned(), "1.0.0".parse::<Version>().unwrap())]);
        let failed = outcome(selected, Ok(&stayed), None);
        assert!(failed.verdicts.len() == 2 && failed.verdicts.iter().all(|v| !v.fixed), "{failed:?}");
    }

    #[test]
    fn a_damaged_package_file_is_an_error_naming_the_line() {
        let updates = [Update::new("toy", "hello", "1.0.0").fixing("CVE-2099-0001", ["1.0.2"])];
        for (contents, wanted) in [
            ("hello 1.0.0\nhello\n", "line 2: expected `NAME VERSION`"),
            ("Hello 1.0.0\n", "line 1: \"Hello\" is not a toy package name"),
            ("hello one\n", "line 1: hello: \"one\" is not a SemVer version"),
            ("hello 1.0.0\nhello 1.0.1\n", "line 2: hello is listed twice"),
            ("hello 1.0.0 extra\n", "line 1"),
        ] {
            let err = plan(root(contents).path(), &updates, Options::default()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::MalformedInput);
            assert!(err.message.contains(wanted), "{contents:?}: {}", err.message);
        }
        let empty = tempfile::tempdir().unwrap();
        let err = plan(empty.path(), &updates, Options::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotApplicable, "{err:?}");
        let err = plan(root(b"hello \xff\n").path(), &updates, Options::default()).unwrap_err();
        assert!(err.message.contains("not UTF-8"), "{}", err.message);
    }

    #[test]
    fn settings_and_index_urls_are_refused_by_name() {
        let root = root(PACKAGES_FILE);
        let updates = [Update::new("toy", "hello", "1.0.0").fixing("CVE-2099-0001", ["1.0.2"])];
        let options = Options { settings: vec![("speed".into(), "fast".into())], ..Options::default() };
        let err = plan(root.path(), &updates, options).unwrap_err();
        assert!(err.message.contains("toy.speed=fast"), "{}", err.message);
        let options = Options { index_urls: vec!["https://example.org".into()], ..Options::default() };
        assert_eq!(plan(root.path(), &updates, options).unwrap_err().kind, ErrorKind::Unsupported);
    }

    #[test]
    fn the_shipped_sample_parses() {
        let facts = vec![Fact {
            question_id: PACKAGES_PROBE.into(),
            answer: Answer::Files(vec![testing::entry(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("packages"),
                PACKAGES.into(),
            )]),
        }];
        let packages = installed(&facts).unwrap();
        assert_eq!(packages.keys().collect::<Vec<_>>(), ["gizmo", "hello", "widget"]);
    }
}
