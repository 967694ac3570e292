//! The plan run for real: a Debian 12 root built by mmdebstrap from suite
//! `bookworm` only, with `bookworm-security` in its sources (so it is
//! behind), patched by running the plan's steps under bubblewrap as the
//! host's local executor does, with the plan's cache mounts, then verified.
//!
//! Needs root, bubblewrap, mmdebstrap and the Debian mirror; the root is
//! cached under /var/tmp/caulk-test-cache. Set CAULK_SKIP_REAL_APT=1 to skip.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use caulk_plugin_apt::Apt;
use caulk_sdk::Updater;
use caulk_sdk::update::{
    CacheMount, OutcomeStatus, Phase, PlanRequest, Step, StepResult, Update, UpdateMode, VerifyRequest,
    VersionTarget,
};
use support::{Root, dpkg_compare, options, probe};

/// The test cache: `$CAULK_TEST_CACHE` (default `/var/tmp/caulk-test-cache`).
fn cache() -> std::path::PathBuf {
    std::env::var_os("CAULK_TEST_CACHE")
        .map_or_else(|| std::path::PathBuf::from("/var/tmp/caulk-test-cache"), std::path::PathBuf::from)
}
const PACKAGES: &[&str] = &["openssl", "libssl3", "libexpat1"];

fn runnable() -> Result<(), String> {
    if std::env::var_os("CAULK_SKIP_REAL_APT").is_some() {
        return Err("CAULK_SKIP_REAL_APT is set".into());
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    for tool in ["bwrap", "mmdebstrap", "cp"] {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status();
        if !found.is_ok_and(|s| s.success()) {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// The cached base root, built once.
fn base_root() -> PathBuf {
    let base = cache().join("apt-plugin-bookworm");
    if base.join("var/lib/dpkg/status").is_file() {
        return base;
    }
    std::fs::create_dir_all(cache()).unwrap();
    // nextest runs each test in its own process: without the lock, two tests
    // on a fresh machine both build, and the second rename meets a full dir.
    let lock = std::fs::File::create(cache().join(".apt-plugin-bookworm.lock")).unwrap();
    lock.lock().unwrap();
    if base.join("var/lib/dpkg/status").is_file() {
        return base;
    }
    let building = cache().join(format!("apt-plugin-bookworm.building-{}", std::process::id()));
    let status = Command::new("mmdebstrap")
        .args(["--variant=apt", "--quiet", &format!("--include={}", PACKAGES.join(","))])
        .arg("bookworm")
        .arg(&building)
        .arg("deb http://deb.debian.org/debian bookworm main")
        .status()
        .expect("mmdebstrap runs");
    assert!(status.success(), "mmdebstrap failed");
    std::fs::write(
        building.join("etc/apt/sources.list.d/security.list"),
        "deb http://deb.debian.org/debian-security bookworm-security main\n",
    )
    .unwrap();
    std::fs::rename(&building, &base).unwrap();
    base
}

/// Runs `argv` in `root` under bubblewrap the way the local executor does:
/// fresh pid/ipc/uts namespaces, clean environment, /tmp 1777, the host's
/// resolv.conf read-only, host network only when asked, caches bound
/// (read-only without network, as the host mounts them then).
fn run(
    root: &Path,
    argv: &[String],
    env: &[(String, String)],
    network: bool,
    caches: &[(PathBuf, String)],
) -> (i32, String, String) {
    let mut cmd = Command::new("bwrap");
    cmd.arg("--bind").arg(root).arg("/");
    cmd.args(["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]);
    cmd.args(["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]);
    cmd.args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--clearenv"]);
    if !network {
        cmd.arg("--unshare-net");
    }
    let bind = if network { "--bind" } else { "--ro-bind" };
    for (host, path) in caches {
        cmd.arg(bind).arg(host).arg(path);
    }
    cmd.args(["--setenv", "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    cmd.args(["--setenv", "HOME", "/root"]);
    for (key, value) in env {
        cmd.args(["--setenv", key, value]);
    }
    cmd.arg("--").args(argv);
    let out = cmd.output().expect("bwrap runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cache_dirs(caches: &[CacheMount]) -> Vec<(PathBuf, String)> {
    caches
        .iter()
        .map(|c| {
            let dir = cache().join("apt-plugin-caches").join(&c.key);
            std::fs::create_dir_all(dir.join("partial")).unwrap();
            (dir, c.path.clone())
        })
        .collect()
}

/// What a scanner would report: every package whose candidate is newer,
/// read from `apt-cache policy` after a real index refresh.
fn scan(root: &Path, caches: &[(PathBuf, String)]) -> Vec<Update> {
    let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (code, _, stderr) = run(root, &argv(&["apt-get", "update"]), &[], true, caches);
    assert_eq!(code, 0, "apt-get update: {stderr}");
    let mut args = vec!["apt-cache", "policy"];
    args.extend(PACKAGES);
    let (code, policy, stderr) = run(root, &argv(&args), &[], false, caches);
    assert_eq!(code, 0, "apt-cache policy: {stderr}");
    let mut updates = Vec::new();
    let mut name = None;
    let mut installed = None;
    for line in policy.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            name = Some(line.trim_end_matches(':').to_owned());
        } else if let Some(v) = line.trim().strip_prefix("Installed: ") {
            installed = Some(v.to_owned());
        } else if let Some(candidate) = line.trim().strip_prefix("Candidate: ")
            && let (Some(name), Some(installed)) = (name.clone(), installed.take())
            && dpkg_compare(&installed, "lt", candidate)
        {
            updates.push(Update {
                ecosystem: "deb".into(),
                vulnerabilities: vec![format!("TEST-{name}")],
                name,
                location: None,
                installed_version: installed,
                fixed_versions: vec![candidate.to_owned()],
            });
        }
    }
    updates
}

/// A copy of the cached base root to patch, or `None` (said why) when the
/// real run cannot happen here.
fn working_copy() -> Option<(tempfile::TempDir, Root)> {
    if let Err(why) = runnable() {
        eprintln!("skipping the real apt run: {why}");
        return None;
    }
    let base = base_root();
    let work = tempfile::Builder::new().prefix("caulk-apt-real-").tempdir_in("/var/tmp").unwrap();
    let copied =
        Command::new("cp").arg("-a").arg(format!("{}/.", base.display())).arg(work.path()).status().unwrap();
    assert!(copied.success());
    let root = Root::at(work.path());
    Some((work, root))
}

/// Docker's Debian images' `/etc/apt/apt.conf.d/docker-clean`: it deletes
/// the downloads after every dpkg run and every `apt-get update`.
const DOCKER_CLEAN: &str = r#"DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"#;

/// The `.deb` files in the archives cache among `caches`.
fn downloads(caches: &[(PathBuf, String)]) -> Vec<String> {
    let (dir, _) = caches.iter().find(|(_, path)| path == "/var/cache/apt/archives").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_plan_patches_a_real_debian_12_root() {
    let Some((work, root)) = working_copy() else { return };
    std::fs::write(work.path().join("etc/apt/apt.conf.d/docker-clean"), DOCKER_CLEAN).unwrap();

    let report_options = options(UpdateMode::Report);
    let (facts, _) = probe(&root, Phase::Plan, &[], &report_options);
    let all = Apt::plan(&PlanRequest {
        target: root.target(),
        updates: Vec::new(),
        options: options(UpdateMode::All),
        facts: facts.clone(),
    })
    .unwrap();
    let caches = cache_dirs(&all.caches);
    let updates = scan(work.path(), &caches);
    assert!(
        !updates.is_empty(),
        "bookworm-security offers nothing newer than bookworm for {PACKAGES:?}; pick packages that are behind"
    );

    let plan = Apt::plan(&PlanRequest {
        target: root.target(),
        updates: updates.clone(),
        options: report_options.clone(),
        facts,
    })
    .unwrap();
    assert_eq!(plan.selected.len(), updates.len(), "{:#?}", plan.skipped);
    assert_eq!(plan.caches, all.caches, "one cache for both modes of one image");
    let mut results = Vec::new();
    for Step { summary, command, tolerate_failure } in &plan.steps {
        let started = std::time::Instant::now();
        let (code, _, stderr) = run(work.path(), &command.argv, &command.env, command.network, &caches);
        eprintln!("{summary}: exit {code} in {:.1} s", started.elapsed().as_secs_f64());
        results.push(StepResult { summary: summary.clone(), exit_code: code, stderr_tail: stderr });
        if code != 0 && !tolerate_failure {
            break;
        }
    }

    // The image's hook could not delete the shared downloads after dpkg
    // (read-only), nor keep them away from the next refresh.
    let fetched = downloads(&caches);
    for selected in &plan.selected {
        let prefix = format!("{}_", selected.name.split(':').next().unwrap());
        assert!(fetched.iter().any(|n| n.starts_with(&prefix)), "no {prefix}*.deb in {fetched:?}");
    }
    let refresh = &plan.steps[0].command;
    let (code, _, stderr) = run(work.path(), &refresh.argv, &refresh.env, refresh.network, &caches);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(downloads(&caches), fetched, "the refresh lost downloads");
    // A refresh killed after the hook deleted the downloads left the only
    // links to them in `.caulk-keep`: the next refresh puts them back.
    let (archives, _) = caches.iter().find(|(_, path)| path == "/var/cache/apt/archives").unwrap();
    let keep = archives.join(".caulk-keep");
    std::fs::create_dir_all(&keep).unwrap();
    for name in &fetched {
        std::fs::hard_link(archives.join(name), keep.join(name)).unwrap();
        std::fs::remove_file(archives.join(name)).unwrap();
    }
    let (code, _, stderr) = run(work.path(), &refresh.argv, &refresh.env, refresh.network, &caches);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(downloads(&caches), fetched, "the next refresh did not mend a killed one");
    assert!(!keep.exists());

    let (facts, _) = probe(&root, Phase::Verify, &[], &report_options);
    let outcomes = Apt::verify(&VerifyRequest {
        target: root.target(),
        options: report_options,
        selected: plan.selected.clone(),
        steps: results,
        facts,
    })
    .unwrap();
    for (outcome, selected) in outcomes.iter().zip(&plan.selected) {
        assert_eq!(outcome.status, OutcomeStatus::Patched, "{outcome:#?}");
        let VersionTarget::AtLeast(fixed) = &selected.target else { panic!("{selected:?}") };
        let to = outcome.to.as_deref().unwrap();
        assert!(dpkg_compare(to, "ge", fixed), "{} {to} < {fixed}", outcome.name);
    }
    // dpkg inside the patched root agrees, and the patched openssl runs.
    let (code, out, _) = run(
        work.path(),
        &["dpkg-query".into(), "-W".into(), "-f".into(), "${Package} ${Version}\n".into(), "openssl".into()],
        &[],
        false,
        &[],
    );
    assert_eq!(code, 0);
    let openssl = outcomes.iter().find(|o| o.name == "openssl").and_then(|o| o.to.clone());
    if let Some(version) = openssl {
        assert_eq!(out.trim(), format!("openssl {version}"));
    }
    let (code, out, err) = run(work.path(), &["openssl".into(), "version".into()], &[], false, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("OpenSSL 3."), "{out}");
}

#[test]
fn the_refresh_step_reuses_indexes_only_while_they_are_fresh() {
    let Some((work, root)) = working_copy() else { return };
    let mut with_ttl = options(UpdateMode::All);
    with_ttl.settings = vec![("index-ttl".into(), "600".into())];
    let (facts, _) = probe(&root, Phase::Plan, &[], &with_ttl);
    let plan = |options: &caulk_sdk::update::Options| {
        Apt::plan(&PlanRequest {
            target: root.target(),
            updates: Vec::new(),
            options: options.clone(),
            facts: facts.clone(),
        })
        .unwrap()
    };
    let fresh_plan = plan(&with_ttl);
    // Caches of its own: the other test refreshes the shared ones at the
    // same time, and apt locks its lists.
    let caches: Vec<(PathBuf, String)> = fresh_plan
        .caches
        .iter()
        .map(|c| {
            let dir = cache().join("apt-plugin-refresh-caches").join(&c.key);
            std::fs::create_dir_all(dir.join("partial")).unwrap();
            (dir, c.path.clone())
        })
        .collect();
    let lists = &caches.iter().find(|(_, path)| path == "/var/lib/apt/lists").unwrap().0;
    let stamp = lists.join(".caulk-refreshed");
    let refresh = |plan: &caulk_sdk::update::PatchPlan| {
        let command = &plan.steps[0].command;
        run(work.path(), &command.argv, &command.env, command.network, &caches)
    };
    let _ = std::fs::remove_file(&stamp);

    // No stamp: apt-get update runs, and a clean refresh leaves the stamp.
    let (code, out, err) = refresh(&fresh_plan);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Reading package lists"), "{out}");
    assert!(!err.contains("package indexes reused"), "{err}");
    assert!(stamp.is_file());

    // Fresh: not run, and said so on stderr.
    let (code, out, err) = refresh(&fresh_plan);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("Reading package lists"), "{out}");
    assert!(err.contains("caulk: package indexes reused: refreshed "), "{err}");
    assert!(err.contains("within apt.index-ttl=600 s"), "{err}");

    // Older than the TTL: refreshed again, the stamp renewed.
    let old = Command::new("touch").arg("-d").arg("@1000000000").arg(&stamp).status().unwrap();
    assert!(old.success());
    let (code, out, _) = refresh(&fresh_plan);
    assert_eq!(code, 0);
    assert!(out.contains("Reading package lists"), "{out}");
    let age = std::fs::metadata(&stamp).unwrap().modified().unwrap().elapsed().unwrap_or_default();
    assert!(age.as_secs() < 600, "the stamp is {age:?} old");

    // A TTL of 0 always refreshes.
    let mut always = with_ttl.clone();
    always.settings = vec![("index-ttl".into(), "0".into())];
    let (code, out, err) = refresh(&plan(&always));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Reading package lists"), "{out}");
}
