//! The plugin runtime through the `caulk` binary: discovery, third-party
//! plugins, the compiled-code cache, and plugins that misbehave.

mod common;

use std::path::{Path, PathBuf};

use common::{Sandbox, failure, run, stderr, success, wasm_of};

const CSV_REPORT: &str = "# caulk-csv v1\nvulnerability,package,installed,fixed,severity,ecosystem\n\
                          CVE-2023-0464,libssl3,3.0.8-1,3.0.9-1~deb12u1,high,deb\n";

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn copy_into(dir: &Path, wasm: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    std::fs::copy(wasm, &dest).unwrap();
    dest
}

/// Writes a component given in WAT text.
fn component(dir: &Path, name: &str, wat_text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat_text).expect("valid WAT")).unwrap();
    path
}

#[test]
fn version_names_the_release() {
    let sandbox = Sandbox::new();
    let out = success(&run(sandbox.caulk().arg("--version")));
    assert_eq!(out.trim(), format!("caulk {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn every_plugin_crate_is_a_builtin_named_after_its_directory() {
    let sandbox = Sandbox::new();
    let list = json(&success(&run(sandbox.caulk().args(["plugins", "list", "--json"]))));
    let builtins: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"]["kind"] == "builtin")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let mut dirs: Vec<String> = std::fs::read_dir(common::workspace().join("plugins"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    let mut builtins_sorted: Vec<String> = builtins.iter().map(ToString::to_string).collect();
    builtins_sorted.sort();
    assert_eq!(builtins_sorted, dirs, "plugins/* and the embedded built-ins differ");
    for plugin in list["plugins"].as_array().unwrap() {
        assert_eq!(plugin["wit"], "0.2.0", "built-ins use the SDK's WIT: {plugin}");
    }
}

#[test]
fn a_third_party_plugin_runs_without_rebuilding_caulk() {
    let sandbox = Sandbox::new();
    let binary_before = std::fs::metadata(common::caulk_bin()).unwrap().modified().unwrap();
    let wasm = wasm_of("caulk-example-csv-scanner");
    let dir = sandbox.mkdir("plugins");
    let installed = copy_into(&dir, &wasm, "csv.wasm");

    let list = json(&success(&run(sandbox
        .caulk()
        .arg("--plugin-dir")
        .arg(&dir)
        .args(["plugins", "list", "--json"]))));
    let csv = list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "csv").expect("csv is listed");
    assert_eq!(csv["kind"], "scanner");
    assert_eq!(csv["source"]["path"], installed.to_str().unwrap());

    let table = success(&run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["plugins", "list"])));
    let line = table.lines().find(|l| l.starts_with("csv ")).expect("a csv row");
    assert!(line.contains("scanner") && line.contains(installed.to_str().unwrap()), "{line}");

    let inspect =
        success(&run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["plugins", "inspect", "csv"])));
    assert!(inspect.contains("caulk:plugin/scanner@0.2.0"), "{inspect}");
    assert!(inspect.contains("caulk:plugin@0.2.0"), "{inspect}");

    let report = sandbox.path().join("report.csv");
    std::fs::write(&report, CSV_REPORT).unwrap();
    let findings = json(&success(&run(sandbox
        .caulk()
        .arg("--plugin-dir")
        .arg(&dir)
        .args(["plugins", "call", "csv", "parse"])
        .arg(&report))));
    assert_eq!(findings["findings"][0]["package"], "libssl3");
    assert_eq!(findings["findings"][0]["fixed_versions"][0], "3.0.9-1~deb12u1");

    // The same plugin found through $CAULK_PLUGIN_PATH and $XDG_DATA_HOME.
    let via_env = success(&run(sandbox.caulk().env("CAULK_PLUGIN_PATH", &dir).args(["plugins", "list"])));
    assert!(via_env.contains("csv "), "{via_env}");
    let data_dir = sandbox.path().join("data/caulk/plugins");
    std::fs::create_dir_all(&data_dir).unwrap();
    copy_into(&data_dir, &wasm, "csv.wasm");
    let via_xdg = success(&run(sandbox.caulk().args(["plugins", "list"])));
    assert!(via_xdg.contains("csv "), "{via_xdg}");

    let binary_after = std::fs::metadata(common::caulk_bin()).unwrap().modified().unwrap();
    assert_eq!(binary_before, binary_after, "caulk was rebuilt");
}

/// README's plugin commands, run as printed from the repository root: the
/// user's plugin directory is made when missing and named where it helps.
#[test]
fn the_user_plugin_directory_is_made_and_named() {
    let sandbox = Sandbox::new();
    let user_dir = sandbox.path().join("data/caulk/plugins");
    let from_root = || {
        let mut cmd = sandbox.caulk();
        cmd.current_dir(common::workspace());
        cmd
    };
    let sample = "examples/csv-scanner/report.csv";

    let err = failure(&run(from_root().args(["plugins", "call", "csv", "parse", sample])), 1);
    assert!(err.contains("no plugin named `csv`"), "{err}");
    assert!(err.contains(&format!("copy its .wasm file into {}", user_dir.display())), "{err}");
    assert!(user_dir.is_dir(), "{} was not made", user_dir.display());

    std::fs::remove_dir_all(sandbox.path().join("data")).unwrap();
    let table = success(&run(from_root().args(["plugins", "list"])));
    assert!(table.contains(&format!("copy its .wasm file into {}", user_dir.display())), "{table}");
    assert!(user_dir.is_dir(), "{} was not made", user_dir.display());
    let list = json(&success(&run(from_root().args(["plugins", "list", "--json"]))));
    assert_eq!(list["user_dir"], user_dir.to_str().unwrap());

    copy_into(&user_dir, &wasm_of("caulk-example-csv-scanner"), "csv.wasm");
    let findings = json(&success(&run(from_root().args(["plugins", "call", "csv", "parse", sample]))));
    let packages: Vec<&str> =
        findings["findings"].as_array().unwrap().iter().map(|f| f["package"].as_str().unwrap()).collect();
    assert_eq!(packages, ["libssl3", "libexpat1", "setuptools", "urllib3", "pip"]);
}

#[test]
fn earlier_directories_win_and_say_what_they_override() {
    let sandbox = Sandbox::new();
    let wasm = wasm_of("caulk-example-csv-scanner");
    let first = sandbox.mkdir("first");
    let second = sandbox.mkdir("second");
    let winner = copy_into(&first, &wasm, "csv.wasm");
    let loser = copy_into(&second, &wasm, "csv-copy.wasm");
    let list = json(&success(&run(sandbox
        .caulk()
        .arg("--plugin-dir")
        .arg(&first)
        .arg("--plugin-dir")
        .arg(&second)
        .args(["plugins", "list", "--json"]))));
    let csv: Vec<_> = list["plugins"].as_array().unwrap().iter().filter(|p| p["name"] == "csv").collect();
    assert_eq!(csv.len(), 1);
    assert_eq!(csv[0]["source"]["path"], winner.to_str().unwrap());
    assert_eq!(csv[0]["overrides"][0]["path"], loser.to_str().unwrap());
}

#[test]
fn a_directory_plugin_overrides_a_builtin_of_the_same_name() {
    let Some(builtin) = std::fs::read_dir(common::workspace().join("plugins"))
        .ok()
        .and_then(|mut rd| rd.find_map(|e| e.ok().filter(|e| e.path().join("Cargo.toml").is_file())))
    else {
        panic!("no built-in plugin crates under plugins/");
    };
    let dir_name = builtin.file_name().to_string_lossy().into_owned();
    let manifest = std::fs::read_to_string(builtin.path().join("Cargo.toml")).unwrap();
    let package = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .map(|rest| rest.trim_end_matches('"').to_owned())
        .unwrap();
    let sandbox = Sandbox::new();
    let dir = sandbox.mkdir("plugins");
    let path = copy_into(&dir, &wasm_of(&package), "override.wasm");
    let table = success(&run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["plugins", "list"])));
    let line = table.lines().find(|l| l.starts_with(&format!("{dir_name} "))).unwrap();
    assert!(line.contains(path.to_str().unwrap()) && line.contains("(overrides built-in)"), "{table}");
}

#[test]
fn two_plugins_of_one_name_in_one_directory_are_refused() {
    let sandbox = Sandbox::new();
    let wasm = wasm_of("caulk-example-csv-scanner");
    let dir = sandbox.mkdir("plugins");
    copy_into(&dir, &wasm, "a.wasm");
    copy_into(&dir, &wasm, "b.wasm");
    let err = failure(&run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["plugins", "list"])), 1);
    assert!(
        err.contains("two plugins named `csv`") && err.contains("a.wasm") && err.contains("b.wasm"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn files_that_are_not_components_are_reported_not_loaded() {
    let sandbox = Sandbox::new();
    let dir = sandbox.mkdir("plugins");
    std::fs::write(dir.join("core.wasm"), wat::parse_str("(module (func (export \"f\")))").unwrap()).unwrap();
    std::fs::write(dir.join("junk.wasm"), b"#!/bin/sh\necho hi\n").unwrap();
    let out = success(&run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["plugins", "list"])));
    assert!(out.contains("core.wasm") && out.contains("core WebAssembly module"), "{out}");
    assert!(out.contains("junk.wasm") && out.contains("magic number"), "{out}");

    let err =
        failure(&run(sandbox.caulk().args(["plugins", "call"]).arg(dir.join("core.wasm")).arg("info")), 1);
    assert!(err.contains("is not a WebAssembly component") && err.contains("hint:"), "{err}");

    // A name that exists nowhere mentions the files that failed to load.
    let err =
        failure(&run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["plugins", "inspect", "nope"])), 1);
    assert!(err.contains("no plugin named `nope`") && err.contains("junk.wasm"), "{err}");
}

#[test]
fn an_unknown_wit_version_is_refused_naming_both_versions() {
    let sandbox = Sandbox::new();
    let path = component(
        sandbox.path(),
        "future.wasm",
        r#"(component (instance $i) (export "caulk:plugin/scanner@0.9.0" (instance $i)))"#,
    );
    let err = failure(&run(sandbox.caulk().args(["plugins", "call"]).arg(&path).arg("info")), 1);
    assert!(err.contains("caulk:plugin@0.9.0") && err.contains("caulk:plugin@0.1.0"), "{err}");
}

#[test]
fn imports_the_host_does_not_provide_are_refused() {
    let sandbox = Sandbox::new();
    let foreign = component(
        sandbox.path(),
        "foreign.wasm",
        r#"(component
             (import "evil:net/socket@1.0.0" (instance))
             (instance $i)
             (export "caulk:plugin/scanner@0.1.0" (instance $i)))"#,
    );
    let err = failure(&run(sandbox.caulk().args(["plugins", "call"]).arg(&foreign).arg("info")), 1);
    assert!(err.contains("imports `evil:net/socket@1.0.0`") && err.contains("does not provide"), "{err}");

    // A WASI interface this host does not link (wasi:http) fails at link time.
    let http = component(
        sandbox.path(),
        "http.wasm",
        r#"(component
             (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
             (instance $i)
             (export "caulk:plugin/scanner@0.1.0" (instance $i)))"#,
    );
    let err = failure(&run(sandbox.caulk().args(["plugins", "call"]).arg(&http).arg("info")), 1);
    assert!(err.contains("cannot be linked") && err.contains("wasi:http/outgoing-handler"), "{err}");

    // The right interface name with the wrong shape.
    let hollow = component(
        sandbox.path(),
        "hollow.wasm",
        r#"(component (instance $i) (export "caulk:plugin/scanner@0.1.0" (instance $i)))"#,
    );
    let err = failure(&run(sandbox.caulk().args(["plugins", "call"]).arg(&hollow).arg("info")), 1);
    assert!(err.contains("cannot be linked"), "{err}");
}

fn misbehave(sandbox: &Sandbox, input: &str, extra: &[&str]) -> (std::process::Output, std::time::Duration) {
    let wasm = wasm_of("caulk-test-misbehave");
    let report = sandbox.path().join(format!("{input}.txt"));
    std::fs::write(&report, input).unwrap();
    let start = std::time::Instant::now();
    let out = run(sandbox.caulk().args(extra).args(["plugins", "call"]).arg(&wasm).arg("parse").arg(&report));
    (out, start.elapsed())
}

#[test]
fn a_trapping_plugin_is_an_error_naming_the_plugin_and_call() {
    let sandbox = Sandbox::new();
    let (out, _) = misbehave(&sandbox, "trap", &[]);
    let err = failure(&out, 1);
    assert!(err.contains("plugin misbehave trapped during parse"), "{err}");
    assert!(
        err.contains("deliberate trap for the host's tests"),
        "the guest's panic message is shown: {err}"
    );
}

#[test]
fn a_looping_plugin_is_stopped_at_its_deadline() {
    let sandbox = Sandbox::new();
    let (out, elapsed) = misbehave(&sandbox, "loop", &["--plugin-timeout", "1s"]);
    let err = failure(&out, 1);
    assert!(err.contains("plugin misbehave did not finish parse within 1s"), "{err}");
    assert!(elapsed < std::time::Duration::from_secs(30), "took {elapsed:?}");
}

#[test]
fn a_plugin_allocating_without_bound_hits_the_memory_limit() {
    let sandbox = Sandbox::new();
    let (out, _) = misbehave(&sandbox, "alloc", &["--plugin-memory", "64"]);
    let err = failure(&out, 1);
    assert!(err.contains("plugin misbehave exceeded its memory limit of 64 MiB during parse"), "{err}");
}

#[test]
fn plugin_log_lines_carry_the_plugin_name() {
    let sandbox = Sandbox::new();
    let (out, _) = misbehave(&sandbox, "log", &[]);
    success(&out);
    let err = stderr(&out);
    assert!(err.contains("a line from the plugin") && err.contains("misbehave"), "{err}");
}

fn cache_entries(sandbox: &Sandbox) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(sandbox.cache_dir().join("plugins"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

#[test]
fn corrupt_and_unreadable_cache_entries_are_recompiled_not_trusted() {
    let sandbox = Sandbox::with_private_cache();
    let wasm = wasm_of("caulk-example-csv-scanner");
    let report = sandbox.path().join("r.csv");
    std::fs::write(&report, CSV_REPORT).unwrap();
    let parse = |sandbox: &Sandbox| {
        let out = run(sandbox.caulk().args(["plugins", "call"]).arg(&wasm).arg("parse").arg(&report));
        json(&success(&out))
    };
    let first = parse(&sandbox);
    let entries = cache_entries(&sandbox);
    assert_eq!(entries.len(), 1, "one entry for one plugin: {entries:?}");
    let entry = &entries[0];
    assert!(entry.extension().is_some_and(|e| e == "cwasm"));
    let good = std::fs::read(entry).unwrap();

    // Flip a byte in the middle of the compiled code.
    let mut damaged = good.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(entry, &damaged).unwrap();
    assert_eq!(parse(&sandbox), first);
    assert_eq!(std::fs::read(entry).unwrap(), good, "the damaged entry was replaced");

    // Truncated.
    std::fs::write(entry, &good[..good.len() / 3]).unwrap();
    assert_eq!(parse(&sandbox), first);
    assert_eq!(std::fs::read(entry).unwrap(), good);

    // Unreadable: a directory where the file should be.
    std::fs::remove_file(entry).unwrap();
    std::fs::create_dir(entry).unwrap();
    assert_eq!(parse(&sandbox), first);
}

#[test]
fn processes_starting_at_once_share_the_cache_safely() {
    let sandbox = Sandbox::with_private_cache();
    let wasm = wasm_of("caulk-example-csv-scanner");
    let dir = sandbox.mkdir("plugins");
    copy_into(&dir, &wasm, "csv.wasm");
    let children: Vec<_> = (0..4)
        .map(|_| {
            sandbox
                .caulk()
                .arg("--plugin-dir")
                .arg(&dir)
                .args(["plugins", "list"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(success(&out).contains("csv "));
    }
    let entries = cache_entries(&sandbox);
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e.extension().is_some_and(|x| x == "cwasm")),
        "no temp files left: {entries:?}"
    );
    // Every entry is whole: a later run loads them all without recompiling.
    let out = run(sandbox.caulk().arg("--plugin-dir").arg(&dir).args(["-vv", "plugins", "list"]));
    let log = stderr(&out);
    assert!(!log.contains("recompiling"), "{log}");
}

/// A `caulk patch` set-up for the `asks` test plugin: a minimal Debian
/// image, a CSV report with one finding of the made-up ecosystem `asks`
/// (read by the example CSV scanner), and both plugins in one directory.
struct Asks {
    sandbox: Sandbox,
    dir: PathBuf,
    wasm: PathBuf,
    report: PathBuf,
    image: String,
}

impl Asks {
    fn new() -> Self {
        Self::with(&wasm_of("caulk-test-asks"), &wasm_of("caulk-example-csv-scanner"))
    }

    /// The set-up with the given builds of the two plugins.
    fn with(asks: &Path, csv: &Path) -> Self {
        let sandbox = Sandbox::new();
        let dir = sandbox.mkdir("plugins");
        let wasm = copy_into(&dir, asks, "asks.wasm");
        copy_into(&dir, csv, "csv.wasm");
        let report = sandbox.path().join("report.csv");
        std::fs::write(
            &report,
            "# caulk-csv v1\nvulnerability,package,installed,fixed,severity,ecosystem\n\
             CVE-2099-0001,thing,1.0,1.1,low,asks\n",
        )
        .unwrap();
        let out =
            std::process::Command::new(common::workspace().join("tests/images/debian.sh")).output().unwrap();
        assert!(out.status.success(), "debian.sh failed:\n{}", stderr(&out));
        let layout = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Self { sandbox, dir, wasm, report, image: format!("oci:{layout}:bookworm") }
    }

    /// `caulk` with the plugin directory and `extra` global flags.
    fn caulk(&self, extra: &[&str]) -> std::process::Command {
        let mut cmd = self.sandbox.caulk();
        cmd.arg("--plugin-dir").arg(&self.dir).args(extra);
        cmd
    }

    /// Patches the image with `asks.ask=ask` and `extra` flags; the result
    /// goes to a layout in the sandbox, never into the cached image.
    fn patch(&self, ask: &str, extra: &[&str]) -> std::process::Output {
        let dest = format!("oci:{}:patched", self.sandbox.path().join("out").display());
        run(self
            .caulk(&[])
            .args(["patch", "--json", "--pkg-types", "library", "-i", &self.image, "-r"])
            .arg(&self.report)
            .args(["--dest", &dest, "--plugin-opt", &format!("asks.ask={ask}")])
            .args(extra))
    }

    /// What the plugin reported for its one update: the summary row's detail.
    fn answered(&self, ask: &str, extra: &[&str]) -> String {
        let summary = json(&success(&self.patch(ask, extra)));
        let row = &summary["rows"][0];
        row["detail"].as_str().unwrap_or_else(|| panic!("no detail in {summary}")).to_owned()
    }

    /// Runs `command` (as printed by caulk, starting with `caulk`) through
    /// the shell, with the sandbox's environment and this caulk first on PATH.
    fn shell(&self, command: &str) -> std::process::Output {
        let bin = common::caulk_bin().parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let caulk = self.sandbox.caulk();
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(command).env_clear().current_dir(self.sandbox.path());
        for (key, value) in caulk.get_envs() {
            if let Some(value) = value {
                sh.env(key, value);
            }
        }
        run(sh.env("PATH", path))
    }
}

/// The CSV example and the `asks` updater as built against WIT 0.1 (before
/// 0.2 existed; `tests/fixtures/plugins/wit-0.1/README.md`) still load, parse,
/// probe, plan and verify through the 0.1 adapter.
#[test]
fn plugins_built_against_wit_0_1_still_run() {
    let old = common::fixtures().join("plugins/wit-0.1");
    let asks = Asks::with(&old.join("asks.wasm"), &old.join("csv-scanner.wasm"));
    let list = json(&success(&run(asks.caulk(&[]).args(["plugins", "list", "--json"]))));
    for name in ["asks", "csv"] {
        let row = list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(row["wit"], "0.1.0", "{row}");
    }

    // Findings come up from 0.1; the asks updater reads its update.
    let report = asks.sandbox.path().join("deb.csv");
    std::fs::write(&report, CSV_REPORT).unwrap();
    let findings =
        json(&success(&run(asks.caulk(&[]).args(["plugins", "call", "csv", "parse"]).arg(&report))));
    assert_eq!(findings["findings"][0]["package"], "libssl3");

    // A probe command and an index look-up answered through the adapter
    // (0.2's answer has fields 0.1 lacks), a step planned and verified.
    for capability in ["image-commands", "index:pypi.org"] {
        success(&run(asks.caulk(&[]).args(["plugins", "grant", "asks", capability])));
    }
    let detail = asks.answered("image-commands", &[]);
    assert!(detail.starts_with("answered: exit 0, stdout \"12."), "{detail}");
    let detail = asks.answered("index", &[]);
    assert!(detail.contains("versions"), "{detail}");
    let summary = json(&success(&asks.patch("step", &[])));
    assert_eq!(summary["rows"][0]["status"], "patched", "{summary}");
}

/// The command a refusal tells the user to run.
fn grant_command(err: &str) -> &str {
    let start = err.find("grant it with `").map(|i| i + "grant it with `".len());
    let start =
        start.or_else(|| err.find("grant it again with `").map(|i| i + "grant it again with `".len()));
    let start = start.unwrap_or_else(|| panic!("no grant command in: {err}"));
    let len = err[start..].find('`').unwrap();
    &err[start..start + len]
}

/// Asserts `out` is the refusal of `capability`, naming the plugin and the
/// command that grants it; returns that command.
#[track_caller]
fn refused(out: &std::process::Output, capability: &str, dir: &Path) -> String {
    let err = failure(out, 1);
    assert!(err.contains("plugin asks") && err.contains(&format!("the capability `{capability}`")), "{err}");
    let command = grant_command(&err);
    assert_eq!(
        command,
        format!("caulk --plugin-dir {} plugins grant asks {capability}", dir.display()),
        "{err}"
    );
    command.to_owned()
}

#[test]
fn each_capability_is_refused_until_granted_and_a_changed_plugin_loses_its_grants() {
    let asks = Asks::new();

    // Commands in the image: refused; the printed command grants; then it runs.
    let command = refused(&asks.patch("image-commands", &[]), "image-commands", &asks.dir);
    let granted = success(&asks.shell(&command));
    assert!(granted.contains("is granted: image-commands"), "{granted}");
    let detail = asks.answered("image-commands", &[]);
    assert!(detail.starts_with("answered: exit 0, stdout \"12."), "the image's debian_version: {detail}");

    // A plan step runs image commands too, so it is allowed now.
    let summary = json(&success(&asks.patch("step", &[])));
    assert_eq!(summary["rows"][0]["status"], "patched", "{summary}");

    // The network, commands from the host's root fs, index look-ups: each its own grant.
    for (ask, capability, answer) in [
        ("network", "network", "answered: exit 0"),
        ("host-tooling", "host-tooling", "answered: exit 0"),
        ("index", "index:pypi.org", "versions"),
    ] {
        let command = refused(&asks.patch(ask, &[]), capability, &asks.dir);
        success(&asks.shell(&command));
        let detail = asks.answered(ask, &[]);
        assert!(detail.contains(answer), "{ask}: {detail}");
    }
    let summary = json(&success(&asks.patch("step-network", &[])));
    assert_eq!(summary["rows"][0]["status"], "patched", "{summary}");

    let list = json(&success(&run(asks.caulk(&[]).args(["plugins", "list", "--json"]))));
    let row = list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "asks").unwrap();
    assert_eq!(row["grants"]["granted"].as_array().unwrap().len(), 4, "{row}");

    // New bytes (one more custom section): every grant is gone, and the
    // refusal says why.
    let mut bytes = std::fs::read(&asks.wasm).unwrap();
    let old_sha = hex_sha256(&bytes);
    bytes.extend_from_slice(&custom_section("caulk-test-edit", b"changed"));
    std::fs::write(&asks.wasm, &bytes).unwrap();
    let out = asks.patch("image-commands", &[]);
    let err = failure(&out, 1);
    assert!(
        err.contains("its grant no longer holds")
            && err.contains(&old_sha)
            && err.contains(&hex_sha256(&bytes))
            && err.contains("bytes changed"),
        "{err}"
    );
    let command = grant_command(&err).to_owned();
    let table = success(&run(asks.caulk(&[]).args(["plugins", "list"])));
    let line = table.lines().find(|l| l.starts_with("asks ")).unwrap();
    assert!(line.contains("not granted: image-commands") && line.contains("no longer holds"), "{line}");
    success(&asks.shell(&command));
    assert!(asks.answered("image-commands", &[]).starts_with("answered: exit 0"));
    let err = failure(&asks.patch("network", &[]), 1);
    assert!(
        err.contains("the capability `network`, which is not granted"),
        "re-granting one is not all: {err}"
    );

    // Revoked: refused again.
    success(&run(asks.caulk(&[]).args(["plugins", "revoke", "asks", "image-commands"])));
    refused(&asks.patch("image-commands", &[]), "image-commands", &asks.dir);
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A component-level custom section: id 0, size, name, data.
fn custom_section(name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = u8::try_from(n & 0x7f).expect("seven bits");
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    let mut section = vec![0];
    leb(body.len(), &mut section);
    section.extend(body);
    section
}

#[test]
fn what_a_plugin_does_not_declare_cannot_be_granted() {
    let asks = Asks::new();
    let err = failure(&asks.patch("index-elsewhere", &[]), 1);
    assert!(
        err.contains("look up `pip` on the index at example.org")
            && err.contains("`index:example.org`, which the plugin does not declare")
            && err.contains("it declares image-commands, host-tooling, network, index:pypi.org"),
        "{err}"
    );
    assert!(!err.contains("grant it with"), "{err}");
    let err = failure(&run(asks.caulk(&[]).args(["plugins", "grant", "asks", "index:example.org"])), 2);
    assert!(err.contains("does not declare"), "{err}");
    let err = failure(&asks.patch("index-elsewhere", &["--grant", "asks:index:example.org"]), 2);
    assert!(err.contains("does not declare"), "{err}");
    let err = failure(&run(asks.caulk(&[]).args(["plugins", "grant", "csv", "network"])), 2);
    assert!(err.contains("it declares nothing"), "a scanner asks for nothing: {err}");
    let err = failure(&run(asks.caulk(&[]).args(["plugins", "grant", "asks", "files"])), 2);
    assert!(err.contains("`files` is not a capability"), "{err}");
}

#[test]
fn a_one_run_grant_is_not_kept() {
    let asks = Asks::new();
    let detail = asks.answered("image-commands", &["--grant", "asks:image-commands"]);
    assert!(detail.starts_with("answered: exit 0"), "{detail}");
    let inspect = json(&success(&run(asks
        .caulk(&["--grant", "asks:network"])
        .args(["plugins", "inspect", "asks", "--json"]))));
    assert_eq!(inspect["grants"]["granted"], serde_json::json!(["network"]), "{inspect}");
    assert!(!asks.sandbox.path().join("home/.config/caulk/grants.json").exists());
    refused(&asks.patch("image-commands", &[]), "image-commands", &asks.dir);
    let err = failure(&asks.patch("image-commands", &["--grant", "nobody:network"]), 2);
    assert!(err.contains("no plugin named `nobody`"), "{err}");
}

#[test]
fn built_in_plugins_are_trusted_and_say_what_they_declare() {
    let sandbox = Sandbox::new();
    let table = success(&run(sandbox.caulk().args(["plugins", "list"])));
    let apt = table.lines().find(|l| l.starts_with("apt ")).unwrap();
    assert!(apt.contains("all (built-in)"), "{table}");
    let inspect = success(&run(sandbox.caulk().args(["plugins", "inspect", "apt"])));
    assert!(inspect.contains("declares     image-commands, host-tooling, network"), "{inspect}");
    let err = failure(&run(sandbox.caulk().args(["plugins", "grant", "apt", "network"])), 2);
    assert!(err.contains("built-in"), "{err}");
    let err = failure(&run(sandbox.caulk().args(["--grant", "apt:network", "plugins", "list"])), 2);
    assert!(err.contains("apt is a built-in plugin, trusted without grants"), "{err}");
}

#[test]
fn a_plugin_over_a_budget_fails_the_run_with_a_plugin_error() {
    let asks = Asks::new();
    let all = ["--grant", "asks:image-commands"];

    // Questions per round: at the budget it is answered, one more is refused.
    let flags = ["--plugin-question-budget", "10", "--plugin-opt", "asks.count=10"];
    success(&asks.patch("questions", &flags));
    let flags = ["--plugin-question-budget", "10", "--plugin-opt", "asks.count=11"];
    let err = failure(&asks.patch("questions", &flags), 1);
    assert!(
        err.contains("plugin asks went over its budget of 10 questions per round: it asked 11 new questions")
            && err.contains("--plugin-question-budget"),
        "{err}"
    );

    // Output of a command: 1 MiB printed fits 1 MiB, one byte more does not.
    let fits = [all[0], all[1], "--plugin-output-budget", "1", "--plugin-opt", "asks.bytes=1048576"];
    assert!(asks.answered("output", &fits).starts_with("answered: exit 0"));
    let over = [all[0], all[1], "--plugin-output-budget", "1", "--plugin-opt", "asks.bytes=1048577"];
    let err = failure(&asks.patch("output", &over), 1);
    assert!(
        err.contains("went over its budget of 1 MiB of output per command")
            && err.contains("head -c 1048577 /dev/zero")
            && err.contains("--plugin-output-budget"),
        "{err}"
    );

    // File contents per round: /etc/apt fits in 1 MiB, /usr does not.
    let etc = ["--plugin-file-budget", "1", "--plugin-opt", "asks.glob=/etc/apt/**"];
    assert!(asks.answered("files", &etc).starts_with("answered: "));
    let usr = ["--plugin-file-budget", "1", "--plugin-opt", "asks.glob=/usr/**"];
    let err = failure(&asks.patch("files", &usr), 1);
    assert!(
        err.contains("went over its budget of 1 MiB of file contents per round")
            && err.contains("question `ask` (/usr/**)")
            && err.contains("--plugin-file-budget"),
        "{err}"
    );

    // Built-ins are trusted, not unbounded: apt's first round reads files.
    let out = run(asks
        .caulk(&["--plugin-file-budget", "0"])
        .args(["patch", "-i", &asks.image, "--dest"])
        .arg(format!("oci:{}:apt", asks.sandbox.path().join("out").display())));
    let err = failure(&out, 1);
    assert!(err.contains("plugin apt went over its budget of 0 MiB of file contents"), "{err}");
}

#[test]
fn a_declaration_this_caulk_cannot_read_keeps_the_plugin_out() {
    let sandbox = Sandbox::new();
    let mut bytes = std::fs::read(wasm_of("caulk-test-asks")).unwrap();
    bytes.extend_from_slice(&custom_section("caulk:capabilities", b"teleport\n"));
    let path = sandbox.path().join("odd.wasm");
    std::fs::write(&path, &bytes).unwrap();
    let err = failure(&run(sandbox.caulk().args(["plugins", "call"]).arg(&path).arg("info")), 1);
    assert!(err.contains("cannot be loaded") && err.contains("`teleport` is not a capability"), "{err}");
}
