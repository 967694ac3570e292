//! What the host does around the plugin, done the simple way for tests:
//! answering probes from a directory laid out like an image root and
//! driving the probe rounds; plus a stand-in for what apk does to the
//! installed database, from an APKINDEX written by the tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use caulk_plugin_apk::Apk;
use caulk_plugin_apk::probe::HOST_APK;
use caulk_sdk::Updater;
use caulk_sdk::types::Platform;
use caulk_sdk::update::{
    Answer, CommandOutput, ExecContext, Fact, FileEntry, FileKind, Options, PatchLevel, PatchPlan, Phase,
    PlanRequest, ProbeRequest, Question, QuestionKind, StepResult, Target, Update, UpdateMode, VerifyRequest,
};

pub fn data(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(relative)
}

pub fn read_data(relative: &str) -> String {
    let path = data(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// What the host's root fs says to `apk --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostApk {
    /// apk-tools is on the host's PATH.
    Present,
    /// No apk: the host answers `unavailable`.
    Missing,
}

/// An image root file system on disk, answering `files` probes as the host
/// does from the merged root.
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
    pub host_apk: HostApk,
}

impl Root {
    /// A committed miniature root under `tests/data/roots/`.
    pub fn mini(name: &str) -> Self {
        Self { dir: data(&format!("roots/{name}")), host_apk: HostApk::Missing }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), host_apk: HostApk::Missing }
    }

    #[must_use]
    pub fn with_host_apk(mut self, host_apk: HostApk) -> Self {
        self.host_apk = host_apk;
        self
    }

    pub fn answer(&self, question: &Question) -> Fact {
        let answer = match &question.kind {
            QuestionKind::Files(patterns) => {
                let mut entries: Vec<FileEntry> =
                    patterns.iter().flat_map(|p| caulk_sdk::testing::glob(&self.dir, p)).collect();
                entries.dedup_by(|a, b| a.path == b.path);
                Answer::Files(entries)
            }
            QuestionKind::Run(command) if question.id == HOST_APK => {
                assert_eq!(command.argv, ["apk", "--version"]);
                assert!(matches!(command.context, ExecContext::Tooling(_)), "{command:?}");
                match self.host_apk {
                    HostApk::Present => Answer::Output(CommandOutput {
                        exit_code: 0,
                        stdout: b"apk-tools 2.14.0, compiled for x86_64.\n".to_vec(),
                        stderr: Vec::new(),
                    }),
                    HostApk::Missing => Answer::Unavailable("command not found: apk".into()),
                }
            }
            other => panic!("the apk plugin asked an unexpected question: {other:?}"),
        };
        Fact { question_id: question.id.clone(), answer }
    }

    pub fn target(&self) -> Target {
        Target {
            os: caulk_sdk::testing::os_release(&self.dir),
            platform: Platform { os: "linux".into(), architecture: "amd64".into(), variant: None },
            env: vec![("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())],
        }
    }
}

pub fn options(mode: UpdateMode) -> Options {
    Options {
        mode,
        patch_level: PatchLevel::Patch,
        ignore_errors: false,
        index_urls: Vec::new(),
        settings: Vec::new(),
    }
}

/// Drives `probe` as the host does: ask, answer, ask again until nothing is
/// new. Returns the facts and the number of rounds that asked something.
pub fn probe(root: &Root, phase: Phase, options: &Options) -> (Vec<Fact>, usize) {
    let request = ProbeRequest::new(phase, root.target(), options.clone());
    let (asked, rounds) = caulk_sdk::testing::probe_rounds::<Apk>(request, |q| root.answer(q));
    (asked.into_iter().map(|(_, fact)| fact).collect(), rounds)
}

pub fn plan_request(root: &Root, updates: Vec<Update>, options: Options) -> PlanRequest {
    let (facts, _) = probe(root, Phase::Plan, &options);
    PlanRequest { target: root.target(), updates, options, facts }
}

pub fn plan(root: &Root, updates: Vec<Update>, options: Options) -> PatchPlan {
    Apk::plan(&plan_request(root, updates, options)).unwrap_or_else(|e| panic!("plan failed: {e:?}"))
}

pub fn update(name: &str, installed: &str, fixed: &[&str]) -> Update {
    Update {
        ecosystem: "apk".into(),
        name: name.into(),
        location: None,
        installed_version: installed.into(),
        fixed_versions: fixed.iter().map(|v| (*v).to_owned()).collect(),
        vulnerabilities: vec![format!("CVE-TEST-{name}")],
    }
}

fn file(path: &str, contents: Vec<u8>) -> FileEntry {
    FileEntry { path: path.into(), kind: FileKind::Regular, contents: Some(contents), link_target: None }
}

/// Verify-phase facts: `installed` and `world` in place of the image's.
pub fn verify_request(
    root: &Root,
    plan: &PatchPlan,
    installed: &str,
    world: &str,
    steps: Vec<StepResult>,
) -> VerifyRequest {
    let facts = vec![
        Fact {
            question_id: "apk-installed".into(),
            answer: Answer::Files(vec![file("/lib/apk/db/installed", installed.as_bytes().to_vec())]),
        },
        Fact {
            question_id: "apk-world".into(),
            answer: Answer::Files(vec![file("/etc/apk/world", world.as_bytes().to_vec())]),
        },
    ];
    VerifyRequest {
        target: root.target(),
        options: options(UpdateMode::Report),
        selected: plan.selected.clone(),
        steps,
        facts,
    }
}

pub fn step_result(summary: &str, exit_code: i32, stderr_file: Option<&str>) -> StepResult {
    StepResult {
        summary: summary.into(),
        exit_code,
        stderr_tail: stderr_file.map(|f| read_data(&format!("stderr/{f}"))).unwrap_or_default(),
    }
}

/// The installed database after apk moved `names` to their versions in
/// `index` (an APKINDEX): each moved block's `V:` replaced, the rest kept
/// byte for byte, as apk rewrites the database.
pub fn upgraded(installed: &str, index: &str, names: &[&str]) -> String {
    let versions: Vec<(String, String)> = index
        .split("\n\n")
        .filter_map(|block| {
            let field = |key: &str| block.lines().find_map(|l| l.strip_prefix(key)).map(str::to_owned);
            Some((field("P:")?, field("V:")?))
        })
        .collect();
    installed
        .split("\n\n")
        .map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("P:")).unwrap_or_default();
            match versions.iter().find(|(n, _)| n == name && names.contains(&n.as_str())) {
                Some((_, version)) => block
                    .lines()
                    .map(|l| if l.starts_with("V:") { format!("V:{version}") } else { l.to_owned() })
                    .collect::<Vec<_>>()
                    .join("\n"),
                None => block.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// apk from the tooling root on the image at /target, with the image's own
/// keys (apk(8): --root, --keys-dir); its repositories, `repositories.d`
/// included, come from the root.
pub const ROOTED: &[&str] =
    &["apk", "--root", "/target", "--keys-dir", "/target/etc/apk/keys", "--no-progress"];
