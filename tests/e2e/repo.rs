//! The repository stands alone: its documents link only to files inside it,
//! nothing reads files from beside the checkout, and `cargo build` at the
//! root (README's Build section) can link every plugin crate for the host.

mod common;

use std::path::{Component, Path, PathBuf};

use common::workspace;

/// Directories that are build output or not ours to check.
const SKIPPED_DIRS: &[&str] = &[".git", "corpus", "artifacts"];

fn skipped(dir: &Path) -> bool {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with("target") || SKIPPED_DIRS.contains(&name.as_ref())
}

/// Every file of the checkout, sorted.
fn files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![workspace()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() && !skipped(&path) {
                pending.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The targets of a Markdown document's inline links and link definitions,
/// outside fenced code blocks.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
        // `[name]: target`
        if let Some(definition) = line.trim_start().strip_prefix('[')
            && let Some((_, target)) = definition.split_once("]: ")
        {
            targets.push(target.trim().to_owned());
        }
    }
    targets
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// Joins `relative` to `base` without touching the file system, so a link
/// that climbs out of the checkout is caught even if the place exists.
fn resolve(base: &Path, relative: &str) -> PathBuf {
    let mut path = base.to_path_buf();
    for part in Path::new(relative).components() {
        match part {
            Component::ParentDir => {
                path.pop();
            }
            Component::Normal(p) => path.push(p),
            _ => {}
        }
    }
    path
}

#[test]
fn every_document_link_resolves_inside_the_repository() {
    let root = workspace();
    let documents: Vec<PathBuf> =
        files().into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    assert!(documents.iter().any(|d| d.ends_with("docs/architecture.md")), "{documents:?}");
    let mut checked = 0;
    let mut broken = Vec::new();
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        for target in link_targets(&text) {
            if is_external(&target) || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let resolved = resolve(document.parent().unwrap(), file);
            checked += 1;
            if !resolved.starts_with(&root) || !resolved.exists() {
                broken.push(format!("{}: {target}", document.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "links that do not resolve inside the repository:\n{}", broken.join("\n"));
    assert!(checked >= 8, "only {checked} links found: is the link parser broken?");
}

#[test]
fn the_link_checker_catches_what_it_should() {
    let text = "see [a](docs/a.md#x), [web](https://x.org) and [up](../../elsewhere/b.md)\n\
                ```\n[not](a link)\n```\n[def]: ../c.md\n";
    assert_eq!(link_targets(text), ["docs/a.md#x", "https://x.org", "../../elsewhere/b.md", "../c.md"]);
    let root = workspace();
    assert!(!resolve(&root, "../../elsewhere/b.md").starts_with(&root));
    assert!(resolve(&root, "docs/../README.md").exists());
}

#[test]
fn nothing_reads_files_from_beside_the_checkout() {
    // Spelled in pieces so this file does not match itself.
    let needles = [concat!("..", "/shared"), concat!("/work", "/shared")];
    let mut found = Vec::new();
    let files = files();
    assert!(files.len() > 100, "only {} files found", files.len());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "files that reach outside the repository:\n{}", found.join("\n"));
}

/// The workspace members built as `cdylib`: plugins, examples, test plugins.
fn cdylib_packages() -> Vec<String> {
    let mut packages = Vec::new();
    for parent in ["plugins", "examples", "tests/plugins"] {
        for entry in std::fs::read_dir(workspace().join(parent)).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
            if !text.contains("\"cdylib\"") {
                continue;
            }
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no package name in {}", manifest.display()));
            packages.push(name.to_owned());
        }
    }
    packages.sort();
    packages
}

#[test]
fn every_cdylib_crate_links_for_the_host() {
    let packages = cdylib_packages();
    assert!(packages.iter().any(|p| p == "caulk-test-misbehave"), "{packages:?}");
    assert!(packages.iter().any(|p| p == "caulk-plugin-trivy"), "{packages:?}");
    // The test build's own target dir, where their dependencies are built
    // already; the outer cargo released its lock before running tests.
    let mut cmd = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace())
        .args(["build", "--quiet", "--locked", "--target-dir"])
        .arg(common::target_dir());
    for package in &packages {
        cmd.args(["-p", package]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cargo build of {packages:?} for the host failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ci_runs_the_one_test_command_the_readme_gives() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let test_section = &readme[readme.find("## Test").expect("a Test section")..];
    let first_block = test_section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
    assert_eq!(first_block.trim(), "scripts/test.sh", "README's test command");
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).unwrap();
    let commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("set ") && !l.starts_with("cd "))
        .collect();
    assert_eq!(commands, ["exec bash scripts/test.sh"], ".ci/run does more than the README's command");
}

/// The scripts' error trap: a failing command names the step it broke.
#[test]
fn a_failing_script_step_is_named() {
    let out = std::process::Command::new("bash")
        .current_dir(workspace())
        .args([
            "-c",
            "set -euo pipefail; . scripts/lib.sh; step 'writing the report'; true; false; echo unreachable",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("step \"writing the report\" failed (exit 1"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("unreachable"));
}
