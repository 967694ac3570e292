//! What the host does around the plugin, done the simple way for tests:
//! answering file probes from a directory laid out like an image root,
//! answering commands and index look-ups (from committed real outputs, or
//! for real under bubblewrap and against PyPI), and driving the probe rounds.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use caulk_plugin_pip::Pip;
use caulk_sdk::Updater;
use caulk_sdk::types::Platform;
use caulk_sdk::update::{
    Answer, Command, CommandOutput, ExecContext, Fact, IndexQuery, Options, PatchLevel, PatchPlan, Phase,
    PlanRequest, ProbeRequest, PublishedVersion, Question, QuestionKind, Target, Update, UpdateMode,
    VerifyRequest,
};

/// The test cache: `$CAULK_TEST_CACHE` (default `/var/tmp/caulk-test-cache`),
/// `pip` in it.
pub fn cache() -> PathBuf {
    std::env::var_os("CAULK_TEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/tmp/caulk-test-cache"), PathBuf::from)
        .join("pip")
}
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn data(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(relative)
}

pub fn read_data(relative: &str) -> Vec<u8> {
    let path = data(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The committed miniature of the Debian 12 test image (see tests/data/README.md).
pub fn mini() -> PathBuf {
    data("roots/bookworm-python")
}

// ---------------------------------------------------------------- files

pub use caulk_sdk::testing::os_release;

pub fn files_answer(root: &Path, patterns: &[String]) -> Answer {
    Answer::Files(caulk_sdk::testing::files(root, patterns))
}

pub fn target(root: &Path) -> Target {
    Target {
        os: os_release(root),
        platform: Platform { os: "linux".into(), architecture: "amd64".into(), variant: None },
        env: vec![("PATH".into(), DEFAULT_PATH.into())],
    }
}

// ---------------------------------------------------------------- index

/// A PEP 691 JSON page (`application/vnd.pypi.simple.v1+json`) turned into
/// the versions the host reports: one entry per version, in the page's
/// order of first appearance, with the `requires-python` of its files and
/// yanked only when every file is.
pub fn published_from_pep691(json: &[u8]) -> Vec<PublishedVersion> {
    let page: serde_json::Value = serde_json::from_slice(json).expect("PEP 691 JSON");
    let project = page["name"].as_str().unwrap_or_default().to_lowercase().replace(['-', '.'], "_");
    let mut order: Vec<String> = Vec::new();
    let mut by_version: BTreeMap<String, (Option<String>, bool)> = BTreeMap::new();
    for file in page["files"].as_array().expect("files") {
        let filename = file["filename"].as_str().unwrap_or_default();
        let Some(version) = version_of(filename, &project) else { continue };
        let requires = file["requires-python"].as_str().map(str::to_owned).filter(|s| !s.is_empty());
        let yanked = match &file["yanked"] {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(_) => true,
            _ => false,
        };
        if let Some((req, all_yanked)) = by_version.get_mut(&version) {
            if req.is_none() {
                *req = requires;
            }
            *all_yanked &= yanked;
        } else {
            order.push(version.clone());
            by_version.insert(version, (requires, yanked));
        }
    }
    order
        .into_iter()
        .map(|v| {
            let (requires_python, yanked) = by_version[&v].clone();
            PublishedVersion { version: v, requires_python, yanked, deprecated: None, engines: Vec::new() }
        })
        .collect()
}

fn version_of(filename: &str, project: &str) -> Option<String> {
    let lower = filename.to_lowercase();
    if let Some(stem) = lower.strip_suffix(".whl") {
        let mut parts = stem.split('-');
        let _name = parts.next()?;
        return parts.next().map(str::to_owned);
    }
    for ext in [".tar.gz", ".zip", ".tar.bz2", ".tgz"] {
        if let Some(stem) = lower.strip_suffix(ext) {
            let normal = stem.replace(['-', '.'], "_");
            if normal.starts_with(&format!("{project}_")) {
                return Some(stem[project.len() + 1..].to_owned());
            }
        }
    }
    None
}

/// The committed PyPI page of `name` (tests/data/pypi/NAME.json.gz).
pub fn committed_index(name: &str) -> Option<Vec<PublishedVersion>> {
    let path = data(&format!("pypi/{}.json.gz", name.to_lowercase().replace(['_', '.'], "-")));
    if !path.is_file() {
        return None;
    }
    let out = Process::new("gzip").arg("-dc").arg(&path).output().expect("gzip runs");
    assert!(out.status.success(), "gzip -dc {}", path.display());
    Some(published_from_pep691(&out.stdout))
}

/// PyPI's page of `name`, fetched now.
pub fn live_index(query: &IndexQuery) -> Answer {
    let base =
        query.index_urls.first().map_or("https://pypi.org/simple", String::as_str).trim_end_matches('/');
    let url = format!("{base}/{}/", query.name.to_lowercase());
    let out = Process::new("curl")
        .args(["-sS", "--fail", "--retry", "3", "-H", "Accept: application/vnd.pypi.simple.v1+json"])
        .arg(&url)
        .output()
        .expect("curl runs");
    if !out.status.success() {
        return Answer::Unavailable(format!("{url}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Answer::Versions(published_from_pep691(&out.stdout))
}

// ---------------------------------------------------------------- hosts

/// Answers questions.
pub trait Host {
    fn answer(&self, question: &Question) -> Answer;
    fn target(&self) -> Target;
}

/// Canned command outputs, keyed by what the command asks.
pub type Runs = Box<dyn Fn(&Command) -> Option<Answer>>;

/// Answers from committed data: files from a directory, look-ups from
/// committed PyPI pages, commands from real outputs under tests/data/runs.
pub struct DataHost {
    pub root: PathBuf,
    pub runs: Runs,
    /// Look-ups answered `unavailable` for these names.
    pub offline: Vec<String>,
    /// Added to the image config's `Env`.
    pub env: Vec<(String, String)>,
}

impl DataHost {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), runs: Box::new(|_| None), offline: Vec::new(), env: Vec::new() }
    }

    pub fn with_runs(mut self, runs: impl Fn(&Command) -> Option<Answer> + 'static) -> Self {
        self.runs = Box::new(runs);
        self
    }
}

/// Whether missing recordings are made now, by running the command in the
/// cached test image (`CAULK_RECORD=1`).
fn recording() -> bool {
    std::env::var_os("CAULK_RECORD").is_some()
}

/// Runs `command` in the cached test image and stores stdout (and stderr,
/// when there is any) under tests/data/`stem`.{`ext`,stderr}.
fn record(command: &Command, stem: &str, ext: &str) {
    let image = base_image();
    let (code, stdout, stderr) = run(&image, &image, command, false);
    eprintln!("recorded {stem} (exit {code})");
    std::fs::create_dir_all(data(stem).parent().expect("a parent")).unwrap();
    std::fs::write(data(&format!("{stem}.{ext}")), stdout).unwrap();
    if !stderr.is_empty() {
        std::fs::write(data(&format!("{stem}.stderr")), stderr).unwrap();
    }
}

/// The committed output of the interpreter facts script for `python`.
pub fn python_facts(python: &str) -> Option<Answer> {
    let path = data(&format!("runs/python{}.txt", python.replace('/', "_")));
    let stdout = std::fs::read(path).ok()?;
    Some(Answer::Output(CommandOutput { exit_code: 0, stdout, stderr: Vec::new() }))
}

/// What a missing interpreter answers under bubblewrap.
pub fn no_such_command(program: &str) -> Answer {
    Answer::Output(CommandOutput {
        exit_code: 1,
        stdout: Vec::new(),
        stderr: format!("bwrap: execvp {program}: No such file or directory\n").into_bytes(),
    })
}

/// Answers every command the plan phase asks of the committed image:
/// interpreter facts from tests/data/runs, the host's pip as it answered on
/// this machine, dry runs from tests/data/reports when one was recorded.
pub fn standard_run(command: &Command) -> Option<Answer> {
    let argv = &command.argv;
    if let Some(answer) = recorded_verify(command, "runs/verify") {
        return Some(answer);
    }
    if argv.len() == 3 && argv[1] == "-c" && argv[2] == caulk_plugin_pip::scripts::PYTHON_FACTS {
        let stem = format!("runs/python{}", argv[0].replace('/', "_"));
        if recording()
            && !data(&format!("{stem}.txt")).is_file()
            && base_image().join(argv[0].trim_start_matches('/')).exists()
        {
            record(command, &stem, "txt");
        }
        return Some(python_facts(&argv[0]).unwrap_or_else(|| no_such_command(&argv[0])));
    }
    if argv.ends_with(&["--version".to_owned()]) && matches!(command.context, ExecContext::Tooling(_)) {
        if recording() && !data("runs/host-pip-version.txt").is_file() {
            record(command, "runs/host-pip-version", "txt");
        }
        return Some(Answer::Output(CommandOutput {
            exit_code: 0,
            stdout: read_data("runs/host-pip-version.txt"),
            stderr: Vec::new(),
        }));
    }
    if argv.iter().any(|a| a == "--dry-run") {
        return Some(recorded_dry_run(command));
    }
    None
}

/// The file name a dry run's output is recorded under: its pins, and
/// `tooling-` for the host's pip.
pub fn dry_run_key(command: &Command) -> String {
    let pins: Vec<&str> =
        command.argv.iter().skip_while(|a| *a != "--").skip(1).map(String::as_str).collect();
    let prefix = if matches!(command.context, ExecContext::Tooling(_)) { "tooling-" } else { "" };
    format!("{prefix}{}", pins.join("+"))
}

fn recorded_dry_run(command: &Command) -> Answer {
    let key = dry_run_key(command);
    if recording()
        && !data(&format!("reports/{key}.json")).is_file()
        && !data(&format!("reports/{key}.stderr")).is_file()
    {
        record(command, &format!("reports/{key}"), "json");
    }
    let stdout = std::fs::read(data(&format!("reports/{key}.json"))).unwrap_or_default();
    let stderr = std::fs::read(data(&format!("reports/{key}.stderr"))).unwrap_or_default();
    if stdout.is_empty() && stderr.is_empty() {
        return Answer::Unavailable(format!("no recorded dry run {key} (argv {:?})", command.argv));
    }
    let exit_code = i32::from(stdout.is_empty());
    Answer::Output(CommandOutput { exit_code, stdout, stderr })
}

impl Host for DataHost {
    fn answer(&self, question: &Question) -> Answer {
        match &question.kind {
            QuestionKind::Files(patterns) => files_answer(&self.root, patterns),
            QuestionKind::Lookup(query) => {
                if self.offline.iter().any(|n| n.eq_ignore_ascii_case(&query.name)) {
                    return Answer::Unavailable("index unreachable (test)".into());
                }
                committed_index(&query.name).map_or_else(
                    || Answer::Unavailable(format!("{} is not on the index", query.name)),
                    Answer::Versions,
                )
            }
            QuestionKind::Run(command) => (self.runs)(command)
                .or_else(|| standard_run(command))
                .unwrap_or_else(|| panic!("no canned answer for {:?}", command.argv)),
        }
    }

    fn target(&self) -> Target {
        let mut target = target(&self.root);
        target.env.extend(self.env.iter().cloned());
        target
    }
}

/// Answers for real: files from a root directory, commands under
/// bubblewrap as the local executor runs them, look-ups from PyPI.
pub struct RealHost {
    pub root: PathBuf,
    /// The root file system tooling commands run in (read-only).
    pub tooling: PathBuf,
    /// Store the verify-phase command outputs under tests/data/runs/verify.
    pub record_verify: bool,
}

impl RealHost {
    pub fn new(root: impl Into<PathBuf>, tooling: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), tooling: tooling.into(), record_verify: false }
    }
}

/// The name the dependency check's lines (`pip check`'s words) are stored
/// under, for an import check run that does one first.
pub fn verify_key(command: &Command) -> Option<String> {
    let argv = &command.argv;
    let python = argv.first()?.replace('/', "_");
    (argv.get(1..3) == Some(&["-c".to_owned(), caulk_plugin_pip::scripts::IMPORT_CHECK.to_owned()])
        && argv.get(6).map(String::as_str) == Some("deps"))
    .then(|| format!("pip-check{python}"))
}

/// The distributions an import check run imports: `(id, key)` with the
/// name each one's results are stored under, `import` with the interpreter
/// and the modules. The committed files hold what the import check said
/// about those modules, as `caulk-import [[module, ok, error], ...]`.
pub fn import_keys(command: &Command) -> Option<Vec<(String, String)>> {
    let argv = &command.argv;
    if argv.len() < 4 || argv[1] != "-c" || argv[2] != caulk_plugin_pip::scripts::IMPORT_CHECK {
        return None;
    }
    let python = argv[0].replace('/', "_");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&argv[3]).ok()?;
    entries
        .iter()
        .map(|e| {
            let modules: Vec<&str> = e["modules"].as_array()?.iter().filter_map(|m| m.as_str()).collect();
            Some((e["id"].as_str()?.to_owned(), format!("import{python}-{}", modules.join("+"))))
        })
        .collect()
}

/// A stored verify-phase output: an import check run put together from
/// the stored results of each distribution, after the stored `pip check`
/// lines of its interpreter (from `dir`, else from runs/verify) when the
/// run checks dependencies first.
pub fn recorded_verify(command: &Command, dir: &str) -> Option<Answer> {
    let read_in = |dir: &str, key: &str| -> Option<(Vec<u8>, Vec<u8>, i32)> {
        let stdout = std::fs::read(data(&format!("{dir}/{key}.stdout"))).ok()?;
        let stderr = std::fs::read(data(&format!("{dir}/{key}.stderr"))).unwrap_or_default();
        let code = std::fs::read_to_string(data(&format!("{dir}/{key}.code"))).ok()?.trim().parse().ok()?;
        Some((stdout, stderr, code))
    };
    let read = |key: &str| read_in(dir, key);
    let mut stdout = format!("{}\n", caulk_plugin_pip::scripts::IMPORT_START);
    if let Some(key) = verify_key(command) {
        let (said, _, _) = read(&key).or_else(|| read_in("runs/verify", &key))?;
        let lines: Vec<String> = String::from_utf8(said)
            .ok()?
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("No broken requirements"))
            .map(str::to_owned)
            .collect();
        let _ = writeln!(
            stdout,
            "{}{}",
            caulk_plugin_pip::scripts::DEPS_PREFIX,
            serde_json::json!({ "lines": lines })
        );
    }
    let mut exit_code = 0;
    for (id, key) in import_keys(command)? {
        let (out, _, code) = read(&key)?;
        exit_code = exit_code.max(code);
        let text = String::from_utf8(out).ok()?;
        let results: Vec<(String, bool, String)> =
            serde_json::from_str(text.trim().strip_prefix("caulk-import ")?).ok()?;
        for (module, ok, error) in results {
            let line = serde_json::json!({"id": id, "module": module, "ok": ok, "error": error});
            stdout.push_str(caulk_plugin_pip::scripts::IMPORT_PREFIX);
            stdout.push_str(&line.to_string());
            stdout.push('\n');
        }
    }
    Some(Answer::Output(CommandOutput { exit_code, stdout: stdout.into_bytes(), stderr: Vec::new() }))
}

/// Stores a real import check run as [`recorded_verify`] reads it: each
/// distribution's results under its own key.
fn record_imports(command: &Command, stdout: &[u8], dir: &Path) {
    let Some(keys) = import_keys(command) else { return };
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix(caulk_plugin_pip::scripts::IMPORT_PREFIX))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for (id, key) in keys {
        let results: Vec<serde_json::Value> = lines
            .iter()
            .filter(|l| l["id"] == id.as_str())
            .map(|l| serde_json::json!([l["module"], l["ok"], l["error"]]))
            .collect();
        std::fs::write(
            dir.join(format!("{key}.stdout")),
            format!("caulk-import {}\n", serde_json::json!(results)),
        )
        .unwrap();
        std::fs::write(dir.join(format!("{key}.code")), "0").unwrap();
    }
}

/// Stores the dependency check's lines of a real run as `pip check` prints
/// them, under `dir`/`key`.{stdout,code}.
fn record_deps(stdout: &[u8], dir: &Path, key: &str) {
    let text = String::from_utf8_lossy(stdout);
    let said: serde_json::Value = text
        .lines()
        .find_map(|l| l.strip_prefix(caulk_plugin_pip::scripts::DEPS_PREFIX))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("the run printed its dependency check");
    let lines: Vec<&str> =
        said["lines"].as_array().expect("lines").iter().filter_map(|l| l.as_str()).collect();
    let text =
        if lines.is_empty() { "No broken requirements found.\n".to_owned() } else { lines.join("\n") + "\n" };
    std::fs::write(dir.join(format!("{key}.stdout")), text).unwrap();
    std::fs::write(dir.join(format!("{key}.code")), if lines.is_empty() { "0" } else { "1" }).unwrap();
}

impl Host for RealHost {
    fn answer(&self, question: &Question) -> Answer {
        match &question.kind {
            QuestionKind::Files(patterns) => files_answer(&self.root, patterns),
            QuestionKind::Lookup(query) => live_index(query),
            QuestionKind::Run(command) => {
                let out = run(&self.root, &self.tooling, command, false);
                if self.record_verify {
                    let dir = data("runs/verify");
                    std::fs::create_dir_all(&dir).unwrap();
                    record_imports(command, &out.1, &dir);
                    if let Some(key) = verify_key(command) {
                        record_deps(&out.1, &dir, &key);
                    }
                }
                Answer::Output(CommandOutput { exit_code: out.0, stdout: out.1, stderr: out.2 })
            }
        }
    }

    fn target(&self) -> Target {
        target(&self.root)
    }
}

/// Host CA bundle, bound over the image's in network steps (this network
/// intercepts HTTPS).
pub const HOST_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Runs a command as the local executor does: bubblewrap, clean
/// environment plus PATH and HOME, /tmp 1777, host network and CA bundle
/// only when asked. `writable` makes the target root writable (steps);
/// probes see it read-only (their changes are discarded by the host).
pub fn run(root: &Path, tooling: &Path, command: &Command, writable: bool) -> (i32, Vec<u8>, Vec<u8>) {
    let mut cmd = Process::new("bwrap");
    let bind = if writable { "--bind" } else { "--ro-bind" };
    let system_root = match &command.context {
        ExecContext::Target => {
            cmd.arg(bind).arg(root).arg("/");
            root
        }
        ExecContext::Tooling(t) => {
            // As the executor does: each top-level entry of the tooling root
            // read-only on bwrap's own root, so the mount point can be made.
            let mut names: Vec<_> = std::fs::read_dir(tooling).expect("tooling root").flatten().collect();
            names.sort_by_key(std::fs::DirEntry::file_name);
            for entry in names {
                let name = entry.file_name();
                if ["proc", "dev", "tmp"].iter().any(|s| name == *s) {
                    continue;
                }
                let dest = Path::new("/").join(&name);
                let meta = std::fs::symlink_metadata(entry.path()).expect("stat");
                if meta.file_type().is_symlink() {
                    cmd.arg("--symlink").arg(std::fs::read_link(entry.path()).expect("link")).arg(dest);
                } else {
                    cmd.arg("--ro-bind").arg(entry.path()).arg(dest);
                }
            }
            cmd.arg(bind).arg(root).arg(&t.mount_point);
            tooling
        }
    };
    cmd.args(["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]);
    if command.network {
        cmd.args(["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]);
        for dest in ca_destinations(system_root) {
            cmd.args(["--ro-bind", HOST_CA]).arg(dest);
        }
    } else {
        cmd.arg("--unshare-net");
    }
    cmd.args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--clearenv"]);
    cmd.args(["--setenv", "PATH", DEFAULT_PATH, "--setenv", "HOME", "/root"]);
    for key in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"] {
        if let Ok(value) = std::env::var(key) {
            cmd.args(["--setenv", key, &value]);
        }
    }
    for (key, value) in &command.env {
        cmd.args(["--setenv", key, value]);
    }
    cmd.args(["--chdir", "/", "--"]).args(&command.argv);
    let out = cmd.stdin(Stdio::null()).output().expect("bwrap runs");
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// Where the host's CA bundle goes: the system bundle paths the executor
/// knows (caulk_exec::CA_BUNDLE_PATHS), where the root has them. Not over
/// certifi's `cacert.pem`: a mount point there makes upgrading certifi fail
/// with EBUSY.
fn ca_destinations(root: &Path) -> Vec<String> {
    caulk_plugin_pip::discover::CA_BUNDLES
        .iter()
        .filter(|p| root.join(p.trim_start_matches('/')).is_file())
        .map(|p| (*p).to_owned())
        .collect()
}

// ---------------------------------------------------------------- driving

pub fn options(level: PatchLevel) -> Options {
    Options {
        mode: UpdateMode::Report,
        patch_level: level,
        ignore_errors: false,
        index_urls: Vec::new(),
        settings: Vec::new(),
    }
}

pub fn without_dry_runs(mut options: Options) -> Options {
    options.settings.push(("dry-run".into(), "false".into()));
    options
}

pub fn update(name: &str, installed: &str, fixed: &[&str], location: Option<&str>) -> Update {
    Update {
        ecosystem: "python".into(),
        name: name.into(),
        location: location.map(str::to_owned),
        installed_version: installed.into(),
        fixed_versions: fixed.iter().map(|v| (*v).to_owned()).collect(),
        vulnerabilities: vec![format!("CVE-TEST-{name}")],
    }
}

/// Drives `probe` as the host does: ask, answer, ask again until nothing is
/// new. Returns the facts and the number of rounds that asked something.
pub fn probe(host: &dyn Host, phase: Phase, updates: &[Update], options: &Options) -> (Vec<Fact>, usize) {
    let (asked, rounds) = probe_rounds(host, phase, updates, options);
    (asked.into_iter().map(|(_, fact)| fact).collect(), rounds)
}

/// Every question of a phase, in the order asked, with the fact that
/// answered it.
pub fn asked(host: &dyn Host, phase: Phase, updates: &[Update], options: &Options) -> Vec<(Question, Fact)> {
    probe_rounds(host, phase, updates, options).0
}

/// Drives the probe rounds as the host does; also how many rounds it took.
fn probe_rounds(
    host: &dyn Host,
    phase: Phase,
    updates: &[Update],
    options: &Options,
) -> (Vec<(Question, Fact)>, usize) {
    let mut asked: Vec<(Question, Fact)> = Vec::new();
    for round in 0..30 {
        let request = ProbeRequest {
            phase,
            target: host.target(),
            updates: updates.to_vec(),
            selected: Vec::new(),
            options: options.clone(),
            facts: asked.iter().map(|(_, fact)| fact.clone()).collect(),
        };
        let questions = Pip::probe(&request).unwrap_or_else(|e| panic!("probe failed: {e:?}"));
        if questions.is_empty() {
            return (asked, round);
        }
        for question in questions {
            assert!(
                !asked.iter().any(|(_, f)| f.question_id == question.id),
                "round {round} asked {} again",
                question.id
            );
            let fact = Fact { question_id: question.id.clone(), answer: host.answer(&question) };
            asked.push((question, fact));
        }
    }
    panic!("the plugin kept asking after 30 rounds");
}

pub fn plan_request(host: &dyn Host, updates: Vec<Update>, options: Options) -> PlanRequest {
    let (facts, _) = probe(host, Phase::Plan, &updates, &options);
    PlanRequest { target: host.target(), updates, options, facts }
}

pub fn plan(host: &dyn Host, updates: Vec<Update>, options: Options) -> PatchPlan {
    Pip::plan(&plan_request(host, updates, options)).unwrap_or_else(|e| panic!("plan failed: {e:?}"))
}

pub fn verify_request(
    host: &dyn Host,
    plan: &PatchPlan,
    updates: &[Update],
    options: &Options,
    steps: Vec<caulk_sdk::update::StepResult>,
) -> VerifyRequest {
    let (facts, _) = probe(host, Phase::Verify, updates, options);
    VerifyRequest {
        target: host.target(),
        options: options.clone(),
        selected: plan.selected.clone(),
        steps,
        facts,
    }
}

/// A command a step runs: the step's own, or one of a side-by-side step's.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The lane of a side-by-side step (an environment), else 0.
    pub lane: usize,
}

/// The lanes of a side-by-side step ([`caulk_plugin_pip::scripts::SIDE_BY_SIDE`]),
/// in the order they first appear.
pub fn lanes(step: &caulk_sdk::update::Step) -> Option<Vec<Vec<Run>>> {
    let argv = &step.command.argv;
    if argv.get(3).map(String::as_str) != Some("-c")
        || argv.get(4).map(String::as_str) != Some(caulk_plugin_pip::scripts::SIDE_BY_SIDE)
    {
        return None;
    }
    let mut ids: Vec<&str> = Vec::new();
    let mut lanes: Vec<Vec<Run>> = Vec::new();
    for pair in argv[5..].chunks(2) {
        let [id, json] = pair else { panic!("LANE COMMAND pairs: {argv:?}") };
        let c: serde_json::Value = serde_json::from_str(json).expect("a command is JSON");
        let lane = ids.iter().position(|i| i == id).unwrap_or_else(|| {
            ids.push(id);
            lanes.push(Vec::new());
            ids.len() - 1
        });
        lanes[lane].push(Run {
            label: c["label"].as_str().expect("a label").to_owned(),
            argv: c["argv"]
                .as_array()
                .expect("argv")
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            // The step's variables, then the command's own.
            env: step
                .command
                .env
                .iter()
                .cloned()
                .chain(
                    c["env"]
                        .as_object()
                        .expect("env")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
                )
                .collect(),
            lane,
        });
    }
    Some(lanes)
}

/// What a step runs: a side-by-side step's commands, else its own.
pub fn runs(step: &caulk_sdk::update::Step) -> Vec<Run> {
    lanes(step).map_or_else(
        || {
            vec![Run {
                label: step.summary.clone(),
                argv: step.command.argv.clone(),
                env: step.command.env.clone(),
                lane: 0,
            }]
        },
        |lanes| lanes.into_iter().flatten().collect(),
    )
}

/// Every argv element of a plan's steps, side-by-side steps' commands too.
pub fn argv_words(plan: &PatchPlan) -> Vec<String> {
    plan.steps.iter().flat_map(|s| runs(s).into_iter().flat_map(|r| r.argv)).collect()
}

// ---------------------------------------------------------------- the real image

pub fn runnable() -> Result<(), String> {
    if std::env::var_os("CAULK_SKIP_REAL_PIP").is_some() {
        return Err("CAULK_SKIP_REAL_PIP is set".into());
    }
    let uid = Process::new("id").arg("-u").output().map_err(|e| format!("id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    for tool in ["bwrap", "mmdebstrap", "curl", "cp", "gzip"] {
        let found =
            Process::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status();
        if !found.is_ok_and(|s| s.success()) {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// Runs `argv` in `root` with network, for building the test image.
fn build_step(root: &Path, argv: &[&str]) {
    let command = Command {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        cwd: None,
        env: vec![("PIP_ROOT_USER_ACTION".into(), "ignore".into())],
        context: ExecContext::Target,
        network: true,
    };
    let (code, stdout, stderr) = run(root, root, &command, true);
    assert!(
        code == 0,
        "{argv:?} failed ({code}):\n{}\n{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
}

/// Version of the cached image: bump when the recipe below changes.
pub const IMAGE: &str = "bookworm-python-v2";

/// The Debian 12 test image, built once into the cache: python3, pip and
/// venv from Debian; old pins from PyPI in the system site (pip's
/// /usr/local/lib/python3.11/dist-packages), in a virtualenv, in a
/// virtualenv without pip, and in a Python 3.9 tree no interpreter of the
/// image runs (`pip install --target`, as a multi-stage build copies one).
/// tests/data/roots/bookworm-python holds the metadata files of exactly
/// this image.
pub fn base_image() -> PathBuf {
    let cache = cache();
    let base = cache.join(IMAGE);
    if base.join("opt/legacy/lib/python3.9/site-packages").is_dir() {
        return base;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // nextest runs every test in a process of its own: without the lock two
    // cold tests both build, and the loser's rename meets a full directory.
    let lock = std::fs::File::create(cache.join(format!(".{IMAGE}.lock"))).unwrap();
    lock.lock().unwrap();
    if base.join("opt/legacy/lib/python3.9/site-packages").is_dir() {
        return base;
    }
    let building = cache.join(format!("{IMAGE}.building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let status = Process::new("mmdebstrap")
        .args(["--variant=apt", "--quiet", "--include=python3,python3-pip,python3-venv,ca-certificates"])
        .arg("bookworm")
        .arg(&building)
        .arg("deb http://deb.debian.org/debian bookworm main")
        .status()
        .expect("mmdebstrap runs");
    assert!(status.success(), "mmdebstrap failed");
    let pip = ["--no-cache-dir", "--disable-pip-version-check"];
    let mut system = vec!["python3", "-m", "pip", "install", "--break-system-packages"];
    system.extend(pip);
    system.extend([
        "requests==2.25.1",
        "urllib3==1.26.5",
        "idna==2.10",
        "chardet==4.0.0",
        "certifi==2022.12.7",
    ]);
    build_step(&building, &system);
    build_step(&building, &["python3", "-m", "venv", "/opt/app/venv"]);
    let mut venv = vec!["/opt/app/venv/bin/pip", "install"];
    venv.extend(pip);
    venv.extend([
        "Jinja2==3.1.2",
        "MarkupSafe==2.1.3",
        "requests==2.31.0",
        "urllib3==2.0.6",
        "idna==3.4",
        "certifi==2023.5.7",
        "charset-normalizer==3.2.0",
        "setuptools==75.1.0",
    ]);
    build_step(&building, &venv);
    build_step(&building, &["python3", "-m", "venv", "--without-pip", "/srv/nopip"]);
    let mut nopip = vec!["python3", "-m", "pip", "--python", "/srv/nopip/bin/python", "install"];
    nopip.extend(pip);
    nopip.extend(["idna==3.6", "MarkupSafe==2.1.2", "chardet==5.1.0"]);
    build_step(&building, &nopip);
    let mut legacy =
        vec!["python3", "-m", "pip", "install", "--target", "/opt/legacy/lib/python3.9/site-packages"];
    legacy.extend(pip);
    legacy.extend([
        "--only-binary=:all:",
        "--python-version",
        "3.9",
        "--implementation",
        "cp",
        "--abi",
        "cp39",
    ]);
    legacy.extend([
        "--platform",
        "manylinux2014_x86_64",
        "idna==3.6",
        "MarkupSafe==2.1.2",
        "urllib3==1.26.5",
    ]);
    build_step(&building, &legacy);
    // Nothing of the build may linger in the image.
    let _ = std::fs::remove_dir_all(building.join("root/.cache"));
    std::fs::rename(&building, &base).unwrap();
    base
}

/// A writable copy of the test image.
pub fn image_copy() -> tempfile::TempDir {
    let base = base_image();
    let work = tempfile::Builder::new().prefix("caulk-pip-real-").tempdir_in("/var/tmp").unwrap();
    let copied =
        Process::new("cp").arg("-a").arg(format!("{}/.", base.display())).arg(work.path()).status().unwrap();
    assert!(copied.success());
    work
}
