//! What the host does around the plugin, done the simple way for tests:
//! answering file probes from a directory laid out like an image root,
//! parsing os-release, turning Trivy reports into `update` records, and
//! driving the probe rounds.

#![allow(dead_code)] // each test binary uses its own subset

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::types::Platform;
use caulk_sdk::update::{
    Answer, Fact, FileEntry, FileKind, Options, OsRelease, PatchLevel, PatchPlan, Phase, PlanRequest,
    ProbeRequest, QuestionKind, StepResult, Target, Update, UpdateMode, VerifyRequest,
};

pub fn data(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(relative)
}

pub fn read_data(relative: &str) -> String {
    let path = data(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A report under the repository's `tests/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).join(relative)
}

/// An image root file system on disk, answering `files` probes as the host
/// does from the merged root.
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
    /// Answer `/usr/bin/apt-get` with this machine's real one: the committed
    /// miniature roots carry only text files.
    pub host_apt_get: bool,
}

impl Root {
    /// A committed miniature root under `tests/data/roots/`.
    pub fn mini(name: &str) -> Self {
        Self { dir: data(&format!("roots/{name}")), host_apt_get: true }
    }

    /// A full root file system.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), host_apt_get: false }
    }

    pub fn without_apt_get(mut self) -> Self {
        self.host_apt_get = false;
        self
    }

    /// Every entry matching `pattern`, sorted by path.
    pub fn glob(&self, pattern: &str) -> Vec<FileEntry> {
        let mut found = caulk_sdk::testing::glob(&self.dir, pattern);
        if found.is_empty() && pattern == "/usr/bin/apt-get" && self.host_apt_get {
            found.push(caulk_sdk::testing::entry(Path::new("/usr/bin/apt-get"), "/usr/bin/apt-get".into()));
        }
        found
    }

    pub fn answer(&self, question: &caulk_sdk::update::Question) -> Fact {
        let answer = match &question.kind {
            QuestionKind::Files(patterns) => {
                let mut entries: Vec<FileEntry> = patterns.iter().flat_map(|p| self.glob(p)).collect();
                entries.dedup_by(|a, b| a.path == b.path);
                Answer::Files(entries)
            }
            other => panic!("the apt plugin asked an unexpected question: {other:?}"),
        };
        Fact { question_id: question.id.clone(), answer }
    }

    /// `/etc/os-release` parsed as the host parses it.
    pub fn os_release(&self) -> Option<OsRelease> {
        caulk_sdk::testing::os_release(&self.dir)
    }

    pub fn target(&self) -> Target {
        Target {
            os: self.os_release(),
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
pub fn probe(root: &Root, phase: Phase, updates: &[Update], options: &Options) -> (Vec<Fact>, usize) {
    let request = ProbeRequest::new(phase, root.target(), options.clone()).updates(updates.to_vec());
    let (asked, rounds) = caulk_sdk::testing::probe_rounds::<Apt>(request, |q| root.answer(q));
    (asked.into_iter().map(|(_, fact)| fact).collect(), rounds)
}

pub fn plan_request(root: &Root, updates: Vec<Update>, options: Options) -> PlanRequest {
    let (facts, _) = probe(root, Phase::Plan, &updates, &options);
    PlanRequest { target: root.target(), updates, options, facts }
}

pub fn plan(root: &Root, updates: Vec<Update>, options: Options) -> PatchPlan {
    Apt::plan(&plan_request(root, updates, options)).unwrap_or_else(|e| panic!("plan failed: {e:?}"))
}

/// Verify-phase facts from `status` (a file under tests/data) in place of
/// the image's dpkg database.
pub fn verify_request(root: &Root, plan: &PatchPlan, status: &str, steps: Vec<StepResult>) -> VerifyRequest {
    let contents = std::fs::read(data(status)).unwrap_or_else(|e| panic!("reading {status}: {e}"));
    let facts = vec![Fact {
        question_id: "dpkg-status".into(),
        answer: Answer::Files(vec![FileEntry {
            path: "/var/lib/dpkg/status".into(),
            kind: FileKind::Regular,
            contents: Some(contents),
            link_target: None,
        }]),
    }];
    VerifyRequest {
        target: root.target(),
        options: options(UpdateMode::Report),
        selected: plan.selected.clone(),
        steps,
        facts,
    }
}

/// A step result as the host reports it, with a real stderr from tests/data/stderr.
pub fn step_result(summary: &str, exit_code: i32, stderr_file: Option<&str>) -> StepResult {
    StepResult {
        summary: summary.into(),
        exit_code,
        stderr_tail: stderr_file.map(|f| read_data(&format!("stderr/{f}"))).unwrap_or_default(),
    }
}

/// Findings of a Trivy JSON report (SchemaVersion 2) grouped into updates as
/// the host groups them: per package, every fixed version in first-seen
/// order, every vulnerability that has a fix.
pub fn trivy_updates(report: &Path) -> Vec<Update> {
    let text =
        std::fs::read_to_string(report).unwrap_or_else(|e| panic!("reading {}: {e}", report.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let mut updates: Vec<Update> = Vec::new();
    for result in json["Results"].as_array().expect("SchemaVersion 2 Results") {
        if result["Class"] != "os-pkgs" {
            continue;
        }
        for vuln in result["Vulnerabilities"].as_array().into_iter().flatten() {
            let fixed: Vec<String> = vuln["FixedVersion"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            if fixed.is_empty() {
                continue;
            }
            let name = vuln["PkgName"].as_str().expect("PkgName").to_owned();
            let installed = vuln["InstalledVersion"].as_str().expect("InstalledVersion").to_owned();
            let id = vuln["VulnerabilityID"].as_str().expect("VulnerabilityID").to_owned();
            if !updates.iter().any(|u| u.name == name) {
                updates.push(Update {
                    ecosystem: "deb".into(),
                    name: name.clone(),
                    location: None,
                    installed_version: installed,
                    fixed_versions: Vec::new(),
                    vulnerabilities: Vec::new(),
                });
            }
            let update = updates.iter_mut().find(|u| u.name == name).expect("just added");
            for version in fixed {
                if !update.fixed_versions.contains(&version) {
                    update.fixed_versions.push(version);
                }
            }
            if !update.vulnerabilities.contains(&id) {
                update.vulnerabilities.push(id);
            }
        }
    }
    updates
}

/// Updates made from real `apt list --upgradable` output (the candidate is
/// the fixed version), the way the end-to-end tests make their reports from
/// `apt-cache policy`.
pub fn upgradable_updates(listing: &str) -> Vec<Update> {
    listing
        .lines()
        .filter(|l| l.contains("[upgradable from: "))
        .map(|line| {
            let (name, rest) = line.split_once('/').expect("name/suite");
            let mut words = rest.split_whitespace();
            let _suite = words.next();
            let candidate = words.next().expect("candidate version");
            let installed =
                line.rsplit_once("[upgradable from: ").expect("installed").1.trim_end_matches(']').to_owned();
            Update {
                ecosystem: "deb".into(),
                name: name.to_owned(),
                location: None,
                installed_version: installed,
                fixed_versions: vec![candidate.to_owned()],
                vulnerabilities: vec![format!("UPGRADE-{name}")],
            }
        })
        .collect()
}

pub fn update(name: &str, installed: &str, fixed: &[&str]) -> Update {
    Update {
        ecosystem: "deb".into(),
        name: name.into(),
        location: None,
        installed_version: installed.into(),
        fixed_versions: fixed.iter().map(|v| (*v).to_owned()).collect(),
        vulnerabilities: vec![format!("CVE-TEST-{name}")],
    }
}

/// `dpkg --compare-versions A OP B` with the real dpkg of this machine.
pub fn dpkg_compare(a: &str, op: &str, b: &str) -> bool {
    std::process::Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .expect("dpkg runs (a Debian machine)")
        .success()
}

/// The same request with the dpkg database replaced by `status`.
pub fn with_status(mut request: PlanRequest, status: &[u8]) -> PlanRequest {
    for fact in &mut request.facts {
        if fact.question_id == "dpkg-status" {
            fact.answer = Answer::Files(vec![FileEntry {
                path: "/var/lib/dpkg/status".into(),
                kind: FileKind::Regular,
                contents: Some(status.to_vec()),
                link_target: None,
            }]);
        }
    }
    request
}

/// `status` with the paragraph of `package` (every architecture) changed:
/// `Version` set to `version` and, when given, `Source` to `source`.
pub fn edit_status(status: &str, package: &str, version: &str, source: Option<&str>) -> String {
    let mut out = String::new();
    for paragraph in status.split("\n\n") {
        if paragraph.is_empty() {
            continue;
        }
        let ours = paragraph.lines().next() == Some(&format!("Package: {package}"));
        let mut had_source = false;
        for line in paragraph.lines() {
            if ours && line.starts_with("Version: ") {
                let _ = writeln!(out, "Version: {version}");
            } else if ours && line.starts_with("Source: ") && source.is_some() {
                had_source = true;
                let _ = writeln!(out, "Source: {}", source.unwrap_or_default());
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        if ours
            && !had_source
            && let Some(source) = source
        {
            let _ = writeln!(out, "Source: {source}");
        }
        out.push('\n');
    }
    out
}

/// `fixed` read with `installed`'s epoch, the way scanners mean it, done
/// by hand so tests do not check the plugin against its own helper.
pub fn with_installed_epoch(installed: &str, fixed: &str) -> String {
    match (installed.split_once(':'), fixed.contains(':')) {
        (Some((epoch, _)), false) if epoch != "0" => format!("{epoch}:{fixed}"),
        _ => fixed.to_owned(),
    }
}

/// Installed `Version`s of `package` in a status file, by plain text search.
pub fn status_versions(status: &str, package: &str) -> Vec<String> {
    status
        .split("\n\n")
        .filter(|p| p.lines().next() == Some(&format!("Package: {package}")))
        .filter(|p| p.contains("\nStatus: install ok installed") || p.contains("\nStatus: hold ok installed"))
        .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("Version: ")).map(str::to_owned))
        .collect()
}
