//! Finding the image's Python environments from facts, in rounds.
//!
//! Round 1 (files): distribution metadata in the usual places and at every
//! location the report names, `pyvenv.cfg` files, standard libraries (their
//! `os.py`), pip configuration files and `EXTERNALLY-MANAGED` markers.
//! Round 2: each virtualenv's distributions and `pip.conf` (files), and each
//! interpreter's own account of itself (`python -c`, no network).
//!
//! Every function here is pure: given the facts so far it either returns
//! what they show or the questions that must be answered first, so `probe`,
//! `plan` and `verify` all see the same image.

use std::collections::{BTreeMap, BTreeSet};

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Answer, Fact, FileEntry, FileKind, Question, Target, Update};

use crate::config::{self, ConfigFile, GLOBAL_FILES, Indexes, USER_FILES};
use crate::env::{self, Dist, Env, EnvKind};
use crate::metadata;
use crate::name;
use crate::pyfacts::PythonFacts;
use crate::scripts::{PYTHON_FACTS, python_command};

pub const DISTS: &str = "dists";
pub const VENVS: &str = "venvs";
pub const STDLIBS: &str = "stdlibs";
pub const PIP_CONF: &str = "pip-conf";
pub const MARKERS: &str = "externally-managed";
pub const VENV_DISTS: &str = "venv-dists";
pub const VENV_CONF: &str = "venv-conf";
pub const PYTHON: &str = "python:";
pub const CA: &str = "ca-bundles";

/// The system CA bundles where caulk's executor mounts the host's bundle in
/// network steps.
pub const CA_BUNDLES: &[&str] = caulk_sdk::CA_BUNDLE_PATHS;

/// Directories searched for distributions in every image.
pub const SITE_GLOBS: &[&str] = &[
    "/usr/lib/python3*/site-packages",
    "/usr/lib/python3*/dist-packages",
    "/usr/local/lib/python3*/site-packages",
    "/usr/local/lib/python3*/dist-packages",
    "/root/.local/lib/python3*/site-packages",
    "/opt/**/site-packages",
];

/// Where virtualenvs are looked for: four levels below `/` (`/venv`,
/// `/opt/venv`, `/app/.venv`, `/usr/src/app/.venv`, `/home/u/app/.venv`) and
/// anywhere under `/opt`. A venv elsewhere is found when the report names
/// its site-packages.
pub const VENV_GLOBS: &[&str] =
    &["/*/pyvenv.cfg", "/*/*/pyvenv.cfg", "/*/*/*/pyvenv.cfg", "/*/*/*/*/pyvenv.cfg", "/opt/**/pyvenv.cfg"];

pub const STDLIB_GLOBS: &[&str] =
    &["/usr/lib/python3.*/os.py", "/usr/local/lib/python3.*/os.py", "/opt/**/lib/python3.*/os.py"];

pub const MARKER_GLOBS: &[&str] =
    &["/usr/lib/python3.*/EXTERNALLY-MANAGED", "/usr/local/lib/python3.*/EXTERNALLY-MANAGED"];

/// The metadata files of distributions in `dir` (a directory or a glob).
pub fn metadata_globs(dir: &str) -> [String; 4] {
    [
        format!("{dir}/*.dist-info/METADATA"),
        format!("{dir}/*.egg-info/PKG-INFO"),
        format!("{dir}/*.egg-info"),
        format!("{dir}/*.egg-info/requires.txt"),
    ]
}

/// The image config's environment (`PIP_INDEX_URL`, `PIP_CONFIG_FILE`, a
/// virtualenv's `PATH` live there).
pub fn image_env(target: &Target) -> Vec<(String, String)> {
    target.env.clone()
}

/// The report's locations that pass the checks of [`name::location`].
pub fn clean_locations(updates: &[Update]) -> BTreeSet<String> {
    updates.iter().filter_map(|u| u.location.as_deref()).filter_map(|l| name::location(l).ok()).collect()
}

/// `PIP_CONFIG_FILE` of the image, when it names an absolute path without
/// glob characters.
fn config_file_var(env: &[(String, String)]) -> Option<String> {
    let value = env.iter().rev().find(|(k, _)| k == "PIP_CONFIG_FILE").map(|(_, v)| v.as_str())?;
    if value == "/dev/null" {
        return None;
    }
    name::location(value).ok()
}

/// Round 1.
pub fn round_one(target: &Target, updates: &[Update]) -> Vec<Question> {
    let mut dist_globs: Vec<String> = SITE_GLOBS.iter().flat_map(|d| metadata_globs(d)).collect();
    let mut venv_globs: Vec<String> = VENV_GLOBS.iter().map(|g| (*g).to_owned()).collect();
    for location in clean_locations(updates) {
        dist_globs.extend(metadata_globs(&location));
        // `ROOT/lib/python3.X/site-packages` of a venv outside the usual places.
        let parts: Vec<&str> = location.rsplitn(4, '/').collect();
        if let [site, py, lib, root] = parts[..]
            && site == "site-packages"
            && py.starts_with("python")
            && lib == "lib"
            && !root.is_empty()
        {
            venv_globs.push(format!("{root}/pyvenv.cfg"));
        }
    }
    let mut conf: Vec<String> = GLOBAL_FILES.iter().chain(USER_FILES).map(|p| (*p).to_owned()).collect();
    if let Some(file) = config_file_var(&image_env(target)) {
        conf.push(file);
    }
    vec![
        Question::files(DISTS, dist_globs),
        Question::files(VENVS, venv_globs),
        Question::files(STDLIBS, STDLIB_GLOBS.iter().copied()),
        Question::files(PIP_CONF, conf),
        Question::files(MARKERS, MARKER_GLOBS.iter().copied()),
        Question::files(CA, CA_BUNDLES.iter().copied()),
    ]
}

fn regular<'f>(facts: &'f [Fact], id: &str) -> impl Iterator<Item = &'f FileEntry> {
    facts.files(id).iter().filter(|f| f.kind == FileKind::Regular)
}

/// Virtualenvs found in round 1: `(pyvenv.cfg path, parsed)`.
pub fn venvs(facts: &[Fact]) -> Vec<(String, metadata::VenvConfig)> {
    let mut out: Vec<(String, metadata::VenvConfig)> = regular(facts, VENVS)
        .filter_map(|f| Some((f.path.clone(), metadata::venv_config(f.contents.as_deref()?))))
        .filter(|(p, _)| name::location(p).is_ok())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Interpreters to ask in round 2: each system stdlib's and each venv's.
pub fn interpreters(facts: &[Fact]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for f in facts.files(STDLIBS) {
        if let Some((prefix, (a, b))) = env::stdlib_interpreter(&f.path) {
            let base = if prefix == "/" { "" } else { prefix.as_str() };
            out.insert(format!("{base}/bin/python{a}.{b}"));
        }
    }
    for (cfg, _) in venvs(facts) {
        out.insert(format!("{}/bin/python", env::parent(&cfg)));
    }
    out.into_iter().collect()
}

pub fn python_question(python: &str) -> Question {
    Question::command(format!("{PYTHON}{python}"), python_command([python, "-c", PYTHON_FACTS]))
}

/// Round 2, given round 1's answers.
pub fn round_two(facts: &[Fact]) -> Vec<Question> {
    let venvs = venvs(facts);
    let mut questions = Vec::new();
    if !venvs.is_empty() {
        let roots: Vec<&str> = venvs.iter().map(|(cfg, _)| env::parent(cfg)).collect();
        let globs: Vec<String> = roots
            .iter()
            .flat_map(|root| {
                let mut globs = metadata_globs(&format!("{root}/lib/python3*/site-packages")).to_vec();
                globs.extend(metadata_globs(&format!("{root}/lib64/python3*/site-packages")));
                globs
            })
            .collect();
        questions.push(Question::files(VENV_DISTS, globs));
        questions.push(Question::files(VENV_CONF, roots.iter().map(|r| format!("{r}/pip.conf"))));
    }
    questions.extend(interpreters(facts).iter().map(|p| python_question(p)));
    questions
}

/// Whether every round-1 question is answered.
pub fn round_one_done(facts: &[Fact]) -> bool {
    [DISTS, VENVS, STDLIBS, PIP_CONF, MARKERS, CA].iter().all(|id| facts.answered(id))
}

/// Questions of rounds 1 and 2 not answered yet; empty when discovery is
/// complete.
pub fn pending(target: &Target, updates: &[Update], facts: &[Fact]) -> Vec<Question> {
    if !round_one_done(facts) {
        return round_one(target, updates);
    }
    round_two(facts)
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Image {
    pub dists: Vec<Dist>,
    pub envs: Vec<Env>,
    /// Global and user pip configuration files, in pip's order.
    pub config_files: Vec<(String, Vec<u8>)>,
    /// The file `PIP_CONFIG_FILE` names, if the image has it.
    pub env_config_file: Option<(String, Vec<u8>)>,
    pub image_env: Vec<(String, String)>,
    /// The image's platform, as Python names its machine.
    pub machine: &'static str,
    /// The image is Alpine (musl): wheels for musllinux.
    pub musl: bool,
    /// The image's system CA bundle, where the host mounts its own in
    /// network steps.
    pub ca_bundle: Option<String>,
}

impl Image {
    /// Builds the image from complete discovery facts.
    pub fn from_facts(target: &Target, facts: &[Fact]) -> Self {
        let mut entries: Vec<&FileEntry> = facts.files(DISTS).iter().collect();
        entries.extend(facts.files(VENV_DISTS));
        let dists = env::dists(&entries);
        let sites: BTreeSet<String> = dists.iter().map(|d| d.site.clone()).collect();
        let stdlibs: Vec<&str> = facts.files(STDLIBS).iter().map(|f| f.path.as_str()).collect();
        let venvs = venvs(facts);
        let venv_refs: Vec<(&str, metadata::VenvConfig)> =
            venvs.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
        let markers: BTreeSet<String> = facts.files(MARKERS).iter().map(|f| f.path.clone()).collect();
        let mut python_facts: BTreeMap<String, Result<PythonFacts, String>> = BTreeMap::new();
        for python in interpreters(facts) {
            let answer = match facts.answer(&format!("{PYTHON}{python}")) {
                Some(Answer::Output(out)) => match PythonFacts::parse(&out.stdout) {
                    Some(parsed) => Ok(parsed),
                    None => Err(format!(
                        "{python} did not run (exit {}{})",
                        out.exit_code,
                        first_line(&out.stderr).map(|l| format!(": {l}")).unwrap_or_default()
                    )),
                },
                Some(Answer::Unavailable(why)) => Err(format!("{python} could not be run: {why}")),
                _ => continue,
            };
            python_facts.insert(python, answer);
        }
        let mut envs = env::environments(&stdlibs, &venv_refs, &markers, &sites, &python_facts);
        for e in &mut envs {
            if let EnvKind::Venv { root, .. } = &e.kind {
                let path = format!("{root}/pip.conf");
                e.site_config = regular(facts, VENV_CONF)
                    .find(|f| f.path == path)
                    .and_then(|f| Some((f.path.clone(), f.contents.clone()?)));
            }
        }
        let image_env = image_env(target);
        let conf: Vec<(String, Vec<u8>)> =
            regular(facts, PIP_CONF).filter_map(|f| Some((f.path.clone(), f.contents.clone()?))).collect();
        let env_file = config_file_var(&image_env);
        let mut config_files = Vec::new();
        for path in GLOBAL_FILES.iter().chain(USER_FILES) {
            if let Some(found) = conf.iter().find(|(p, _)| p == path) {
                config_files.push(found.clone());
            }
        }
        let env_config_file = env_file.and_then(|path| conf.iter().find(|(p, _)| *p == path).cloned());
        let machine =
            crate::pyfacts::machine(&target.platform.architecture, target.platform.variant.as_deref());
        let musl = target
            .os
            .as_ref()
            .is_some_and(|os| os.id == "alpine" || os.id_like.iter().any(|i| i == "alpine"));
        let ca_bundle = CA_BUNDLES
            .iter()
            .find(|path| regular(facts, CA).any(|f| f.path == **path))
            .map(|p| (*p).to_owned());
        Self { dists, envs, config_files, env_config_file, image_env, machine, musl, ca_bundle }
    }

    /// `PIP_CERT` for pip running in the image with the host's network: the
    /// system bundle, where the host mounts its own CA bundle. pip releases
    /// that verify with their vendored certifi (upstream pip before 24.2)
    /// would otherwise not trust what the host trusts (an intercepting
    /// proxy's CA). Left alone when the image chose a bundle itself
    /// (`cert` in pip.conf, `PIP_CERT`, `REQUESTS_CA_BUNDLE`).
    pub fn pip_cert(&self, env: &Env) -> Option<(String, String)> {
        let bundle = self.ca_bundle.clone()?;
        let own = self.indexes(env, &[]);
        let set = |key: &str| self.image_env.iter().any(|(k, _)| k == key);
        if own.cert.is_some() || set("PIP_CERT") || set("REQUESTS_CA_BUNDLE") {
            return None;
        }
        Some(("PIP_CERT".to_owned(), bundle))
    }

    /// The indexes pip uses in `env`, the command line's taking precedence.
    pub fn indexes(&self, env: &Env, command_line: &[String]) -> Indexes {
        let mut files: Vec<ConfigFile<'_>> = Vec::new();
        let env_file_exists = self.env_config_file.is_some();
        for (path, bytes) in &self.config_files {
            // pip skips user files when PIP_CONFIG_FILE names a file that exists.
            if env_file_exists && USER_FILES.contains(&path.as_str()) {
                continue;
            }
            files.push((path, bytes));
        }
        if let Some((path, bytes)) = &env.site_config {
            files.push((path, bytes));
        }
        if let Some((path, bytes)) = &self.env_config_file {
            files.push((path, bytes));
        }
        config::indexes(&files, &self.image_env, command_line)
    }
}

/// The first non-empty line of some output, trimmed, at most 300 bytes.
pub fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(truncate(line, 300))
}

/// Cuts `text` to at most `max` bytes at a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
