//! The Python environments of an image and the distributions in them, as
//! far as the facts show.
//!
//! - A *system* environment belongs to an interpreter whose standard library
//!   is at `PREFIX/lib/python3.X` (found by its `os.py`); its interpreter is
//!   `PREFIX/bin/python3.X`.
//! - A *virtualenv* has a `pyvenv.cfg`; its interpreter is `ROOT/bin/python`.
//! - A *loose* directory holds distributions no interpreter's `sys.path`
//!   includes (`pip install --target`, a copied tree); it is patched with
//!   `--target` and its Python version comes from a `python3.X` path
//!   component or the only interpreter of that version.
//!
//! Where an interpreter runs, its own answer (see [`crate::pyfacts`])
//! decides `sys.path`, where its pip installs and its marker environment;
//! conventions stand in only for interpreters that cannot run.

use std::collections::{BTreeMap, BTreeSet};

use crate::pep508::{MarkerEnv, Requirement};
use caulk_sdk::update::{FileEntry, FileKind};

use crate::metadata::{self, VenvConfig};
use crate::name::{self, Version};
use crate::pyfacts::{self, PythonFacts};

/// One installed distribution.
#[derive(Debug, Clone)]
pub struct Dist {
    /// `Name` from its metadata (or its directory's name).
    pub name: String,
    pub normal: String,
    /// `Version` as written.
    pub version_text: String,
    /// The version, when it is PEP 440.
    pub version: Option<Version>,
    /// The `.dist-info` or `.egg-info` directory (or egg-info file).
    pub meta_dir: String,
    /// The directory holding it (site-packages, ...).
    pub site: String,
    pub egg: bool,
    pub requires: Vec<Requirement>,
    pub requires_python: Option<String>,
}

impl Dist {
    /// `requests 2.25.1`.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version_text)
    }

    /// The metadata directory's own name.
    pub fn meta_name(&self) -> &str {
        self.meta_dir.rsplit('/').next().unwrap_or_default()
    }
}

/// The parent directory of an absolute path (`/` for top-level entries).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Distributions from the answers to metadata globs: `*.dist-info/METADATA`,
/// `*.egg-info/PKG-INFO`, `*.egg-info` files and `*.egg-info/requires.txt`.
/// Sorted by site, then name; one entry per metadata directory.
pub fn dists(entries: &[&FileEntry]) -> Vec<Dist> {
    let mut requires_txt: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for entry in entries {
        if let (Some(dir), Some(bytes)) =
            (entry.path.strip_suffix("/requires.txt"), entry.contents.as_deref())
            && dir.ends_with(".egg-info")
        {
            requires_txt.insert(dir, bytes);
        }
    }
    let mut out: BTreeMap<String, Dist> = BTreeMap::new();
    for entry in entries {
        if entry.kind != FileKind::Regular {
            continue;
        }
        let Some(bytes) = entry.contents.as_deref() else { continue };
        let (meta_dir, egg) = if let Some(dir) = entry.path.strip_suffix("/METADATA") {
            if !dir.ends_with(".dist-info") {
                continue;
            }
            (dir, false)
        } else if let Some(dir) = entry.path.strip_suffix("/PKG-INFO") {
            if !dir.ends_with(".egg-info") {
                continue;
            }
            (dir, true)
        } else if entry.path.ends_with(".egg-info") {
            (entry.path.as_str(), true)
        } else {
            continue;
        };
        let mut meta = metadata::core_metadata(bytes);
        if let Some(req) = requires_txt.get(meta_dir) {
            metadata::egg_requires(req, &mut meta);
        }
        let dir_name = meta_dir.rsplit('/').next().unwrap_or_default();
        let stem = dir_name.trim_end_matches(".dist-info").trim_end_matches(".egg-info");
        let (dir_dist, dir_version) = stem.split_once('-').unwrap_or((stem, ""));
        let name = meta.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| dir_dist.to_owned());
        let version_text =
            meta.version.clone().unwrap_or_else(|| dir_version.split('-').next().unwrap_or("").to_owned());
        out.insert(
            meta_dir.to_owned(),
            Dist {
                normal: name::normalise(&name),
                version: version_text.parse().ok(),
                name,
                version_text,
                meta_dir: meta_dir.to_owned(),
                site: parent(meta_dir).to_owned(),
                egg,
                requires: meta.requires,
                requires_python: meta.requires_python,
            },
        );
    }
    let mut list: Vec<Dist> = out.into_values().collect();
    list.sort_by(|a, b| (&a.site, &a.normal, &a.meta_dir).cmp(&(&b.site, &b.normal, &b.meta_dir)));
    list
}

/// Where a directory sits inside another distribution's package (a
/// vendored copy): `.../site-packages/setuptools/_vendor` gives
/// `("setuptools", ".../site-packages")`.
pub fn vendored_in(site: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = site.split('/').collect();
    let idx = parts.iter().rposition(|p| *p == "site-packages" || *p == "dist-packages")?;
    if idx + 1 >= parts.len() {
        return None;
    }
    let owner = parts[idx + 1];
    let base_len: usize = parts[..=idx].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
    Some((owner, &site[..base_len]))
}

/// The Python version a path names (`.../python3.11/...`).
pub fn version_in_path(path: &str) -> Option<(u64, u64)> {
    path.split('/').find_map(|part| part.strip_prefix("python").and_then(pyfacts::parse_major_minor))
}

/// What kind of environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvKind {
    System { prefix: String },
    Venv { root: String, config: VenvConfig },
    Loose { site: String },
}

/// A Python environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub kind: EnvKind,
    /// The interpreter to ask and to run, if there is one to try.
    pub python: Option<String>,
    /// `(major, minor)`, from the interpreter, `pyvenv.cfg` or a path.
    pub version: Option<(u64, u64)>,
    /// The interpreter's own answer, when it ran.
    pub facts: Option<PythonFacts>,
    /// Why the interpreter could not be asked, when it was tried.
    pub not_runnable: Option<String>,
    /// Directories whose distributions the interpreter sees, in order.
    pub sys_path: Vec<String>,
    /// Where the environment's pip installs (purelib, platlib, user site).
    pub install_dirs: Vec<String>,
    pub user_site: Option<String>,
    /// PEP 668 marker present for this interpreter (never for a venv).
    pub externally_managed: bool,
    /// pip's version inside the environment, when it has pip.
    pub pip: Option<Version>,
    /// Its own `pip.conf` (a virtualenv's), when present.
    pub site_config: Option<(String, Vec<u8>)>,
}

impl Env {
    /// For people: `the virtualenv /opt/app/venv (Python 3.11)`.
    pub fn label(&self) -> String {
        let version = self.version.map(|(a, b)| format!(" (Python {a}.{b})")).unwrap_or_default();
        match &self.kind {
            EnvKind::System { .. } => match self.version {
                Some((a, b)) => {
                    format!("the system Python {a}.{b} ({})", self.python.as_deref().unwrap_or("?"))
                }
                None => format!("the system Python {}", self.python.as_deref().unwrap_or("?")),
            },
            EnvKind::Venv { root, .. } => format!("the virtualenv {root}{version}"),
            EnvKind::Loose { site } => format!("the directory {site}{version}"),
        }
    }

    /// The marker environment for evaluating `Requires-Dist` markers.
    pub fn markers(&self, machine: &str) -> Option<MarkerEnv> {
        self.facts.as_ref().and_then(PythonFacts::marker_environment).or_else(|| {
            let (major, minor) = self.version?;
            pyfacts::assumed_markers(major, minor, machine)
        })
    }

    /// The full interpreter version when known (`3.11.2`), else `None`.
    pub fn full_version(&self) -> Option<Version> {
        self.facts.as_ref().and_then(|f| f.marker("python_full_version").parse().ok())
    }

    /// Whether the interpreter answered and has pip.
    pub fn runs_pip(&self) -> bool {
        self.facts.is_some() && self.pip.is_some()
    }

    pub fn root(&self) -> Option<&str> {
        match &self.kind {
            EnvKind::Venv { root, .. } => Some(root),
            _ => None,
        }
    }
}

/// A system interpreter found by its standard library's `os.py`:
/// `(prefix, (major, minor))`.
pub fn stdlib_interpreter(os_py: &str) -> Option<(String, (u64, u64))> {
    let lib = os_py.strip_suffix("/os.py")?;
    let (prefix_lib, dir) = lib.rsplit_once('/')?;
    let version = dir.strip_prefix("python").and_then(pyfacts::parse_major_minor)?;
    let prefix = prefix_lib.strip_suffix("/lib")?;
    Some((if prefix.is_empty() { "/".to_owned() } else { prefix.to_owned() }, version))
}

/// Builds the environments from discovery facts.
///
/// `stdlibs` are `os.py` paths, `venvs` `pyvenv.cfg` entries, `markers`
/// `EXTERNALLY-MANAGED` paths, `sites` every directory holding
/// distributions, `python_facts` the interpreters' answers by path (`Err`
/// holding why one could not run).
pub fn environments(
    stdlibs: &[&str],
    venvs: &[(&str, VenvConfig)],
    markers: &BTreeSet<String>,
    sites: &BTreeSet<String>,
    python_facts: &BTreeMap<String, Result<PythonFacts, String>>,
) -> Vec<Env> {
    let mut envs: Vec<Env> = Vec::new();
    let mut seen_prefix = BTreeSet::new();
    for os_py in stdlibs {
        let Some((prefix, (major, minor))) = stdlib_interpreter(os_py) else { continue };
        if !seen_prefix.insert((prefix.clone(), major, minor)) {
            continue;
        }
        let base = if prefix == "/" { String::new() } else { prefix.clone() };
        let python = format!("{base}/bin/python{major}.{minor}");
        let lib = format!("{base}/lib/python{major}.{minor}");
        let mut sys_path = vec![format!("{lib}/site-packages"), format!("{lib}/dist-packages")];
        if prefix == "/usr" {
            // Debian and Ubuntu: pip's packages under /usr/local, the
            // distribution's in the version-less directory.
            sys_path.insert(0, format!("/usr/local/lib/python{major}.{minor}/dist-packages"));
            sys_path.push(format!("/usr/lib/python{major}/dist-packages"));
        }
        envs.push(Env {
            kind: EnvKind::System { prefix },
            python: Some(python),
            version: Some((major, minor)),
            facts: None,
            not_runnable: None,
            sys_path,
            install_dirs: Vec::new(),
            user_site: None,
            externally_managed: markers.contains(&format!("{lib}/EXTERNALLY-MANAGED")),
            pip: None,
            site_config: None,
        });
    }
    for (cfg_path, config) in venvs {
        let root = parent(cfg_path).to_owned();
        let version = config.version.as_deref().and_then(pyfacts::parse_major_minor);
        let mut sys_path: Vec<String> = sites
            .iter()
            .filter(|s| s.starts_with(&format!("{root}/lib")) && s.ends_with("/site-packages"))
            .cloned()
            .collect();
        if sys_path.is_empty()
            && let Some((a, b)) = version
        {
            sys_path.push(format!("{root}/lib/python{a}.{b}/site-packages"));
        }
        if config.include_system_site_packages
            && let Some(home) = &config.home
        {
            let base_prefix = parent(home.trim_end_matches('/'));
            if let Some(base) = envs.iter().find(|e| {
                matches!(&e.kind, EnvKind::System { prefix } if prefix == base_prefix) && e.version == version
            }) {
                sys_path.extend(base.sys_path.clone());
            }
        }
        envs.push(Env {
            kind: EnvKind::Venv { root: root.clone(), config: config.clone() },
            python: Some(format!("{root}/bin/python")),
            version,
            facts: None,
            not_runnable: None,
            sys_path,
            install_dirs: Vec::new(),
            user_site: None,
            externally_managed: false,
            pip: None,
            site_config: None,
        });
    }
    for env in &mut envs {
        let Some(python) = env.python.clone() else { continue };
        match python_facts.get(&python) {
            Some(Ok(facts)) => apply_facts(env, facts.clone()),
            Some(Err(why)) => env.not_runnable = Some(why.clone()),
            None => {}
        }
    }
    // Directories nobody sees: loose, patched with --target.
    for site in sites {
        if vendored_in(site).is_some() || envs.iter().any(|e| e.sys_path.contains(site)) {
            continue;
        }
        let version = version_in_path(site);
        let python = version.and_then(|v| {
            let same: Vec<&Env> = envs
                .iter()
                .filter(|e| {
                    matches!(e.kind, EnvKind::System { .. }) && e.version == Some(v) && e.facts.is_some()
                })
                .collect();
            (same.len() == 1).then(|| same[0].python.clone()).flatten()
        });
        let facts = python.as_ref().and_then(|p| python_facts.get(p)).and_then(|r| r.as_ref().ok()).cloned();
        envs.push(Env {
            kind: EnvKind::Loose { site: site.clone() },
            python,
            version,
            pip: facts.as_ref().and_then(|f| f.pip.as_deref()).and_then(|p| p.parse().ok()),
            facts,
            not_runnable: None,
            sys_path: vec![site.clone()],
            install_dirs: Vec::new(),
            user_site: None,
            externally_managed: false,
            site_config: None,
        });
    }
    envs
}

fn apply_facts(env: &mut Env, facts: PythonFacts) {
    if let Some(v) = facts.python_version() {
        env.version = Some(v);
    }
    env.sys_path = facts.sys_path.iter().map(|p| p.trim_end_matches('/').to_owned()).collect();
    env.install_dirs = [facts.purelib.as_deref(), facts.platlib.as_deref()]
        .into_iter()
        .flatten()
        .map(|p| p.trim_end_matches('/').to_owned())
        .fold(Vec::new(), |mut acc, p| {
            if !acc.contains(&p) {
                acc.push(p);
            }
            acc
        });
    env.user_site.clone_from(&facts.user_site);
    if let Some(user) = &facts.user_site
        && !env.sys_path.contains(user)
    {
        // The user site is only on sys.path when it exists; pip still
        // installs there with --user.
        env.sys_path.push(user.clone());
    }
    // A venv's pip ignores the base interpreter's EXTERNALLY-MANAGED.
    if facts.prefix.is_some() && facts.prefix != facts.base_prefix {
        env.externally_managed = false;
    }
    env.pip = facts.pip.as_deref().and_then(|p| p.parse().ok());
    env.facts = Some(facts);
}

/// The environments that see `site`: first those whose pip installs there,
/// then those with it on `sys.path`.
pub fn owners<'e>(envs: &'e [Env], site: &str) -> Vec<(usize, &'e Env)> {
    let mut found: Vec<(usize, &Env)> =
        envs.iter().enumerate().filter(|(_, e)| e.install_dirs.iter().any(|d| d == site)).collect();
    found.extend(
        envs.iter().enumerate().filter(|(_, e)| {
            !e.install_dirs.iter().any(|d| d == site) && e.sys_path.iter().any(|d| d == site)
        }),
    );
    found
}

/// The distributions an environment sees, first on `sys.path` winning (as
/// the import system and `pip check` see them).
pub fn visible<'d>(env: &Env, dists: &'d [Dist]) -> Vec<&'d Dist> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in &env.sys_path {
        for dist in dists.iter().filter(|d| &d.site == dir) {
            if seen.insert(dist.normal.clone()) {
                out.push(dist);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            vendored_in("/opt/v/lib/python3.11/site-packages/setuptools/_vendor"),
            Some(("setuptools", "/opt/v/lib/python3.11/site-packages"))
        );
        assert_eq!(vendored_in("/usr/lib/python3/dist-packages"), None);
        assert_eq!(version_in_path("/usr/local/lib/python3.12/site-packages"), Some((3, 12)));
        assert_eq!(version_in_path("/usr/lib/python3/dist-packages"), None);
        assert_eq!(
            stdlib_interpreter("/usr/local/lib/python3.12/os.py"),
            Some(("/usr/local".into(), (3, 12)))
        );
        assert_eq!(parent("/a"), "/");
    }
}
