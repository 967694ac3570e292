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
        assert_eq!(plugin["wit"], "0.1.0", "{plugin}");
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
    assert!(inspect.contains("caulk:plugin/scanner@0.1.0"), "{inspect}");
    assert!(inspect.contains("caulk:plugin@0.1.0"), "{inspect}");

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
