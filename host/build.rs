//! Builds the plugins under `plugins/` for `wasm32-wasip2` and embeds them in
//! the `caulk` binary, so a user never runs a separate build step.
//!
//! The nested cargo uses its own target directory: the outer cargo holds the
//! lock on the main one for as long as this script runs.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

/// Variables the outer cargo sets for the host build that must not leak into
/// the wasm build: flags meant for the host target, and clippy's wrapper
/// (the plugins are linted natively by the workspace's own clippy run).
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_PRIMARY_PACKAGE",
];

struct Plugin {
    dir_name: String,
    package: String,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));

    for watched in ["plugins", "sdk", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CAULK_BUILTIN_PLUGINS");
    println!("cargo:rerun-if-env-changed=CAULK_PREBUILT_PLUGINS");

    let plugins = selected_plugins(&root.join("plugins"));
    let wasm_paths = match env::var_os("CAULK_PREBUILT_PLUGINS") {
        Some(dir) => prebuilt(Path::new(&dir), &plugins),
        None => build(&root, &plugins),
    };

    let mut code = String::from("pub static BUILTINS: &[Builtin] = &[\n");
    for (plugin, wasm) in plugins.iter().zip(&wasm_paths) {
        let bytes = fs::read(wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
        let digest = hex::encode(Sha256::digest(&bytes));
        writeln!(
            code,
            "    Builtin {{ dir_name: {:?}, package: {:?}, sha256: {:?}, wasm: include_bytes!({:?}) }},",
            plugin.dir_name,
            plugin.package,
            digest,
            wasm.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    fs::write(out_dir.join("builtin_plugins.rs"), code).expect("writing builtin_plugins.rs");
}

/// Every crate under `plugins/`, or those named in `CAULK_BUILTIN_PLUGINS`
/// (comma-separated directory names; empty for none), for slim builds and for
/// working on the host while a plugin is mid-edit.
fn selected_plugins(plugins_dir: &Path) -> Vec<Plugin> {
    let wanted: Option<Vec<String>> = env::var("CAULK_BUILTIN_PLUGINS")
        .ok()
        .map(|list| list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect());
    let mut plugins = Vec::new();
    let Ok(entries) = fs::read_dir(plugins_dir) else { return plugins };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else { continue };
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        if wanted.as_ref().is_some_and(|w| !w.contains(&dir_name)) {
            continue;
        }
        let package =
            package_name(&text).unwrap_or_else(|| panic!("{} has no [package] name", manifest.display()));
        plugins.push(Plugin { dir_name, package });
    }
    plugins.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    plugins
}

/// The `name` of the `[package]` table; enough TOML for our own manifests.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("name").map(str::trim_start)
            && let Some(value) = value.strip_prefix('=')
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn build(root: &Path, plugins: &[Plugin]) -> Vec<PathBuf> {
    if plugins.is_empty() {
        return Vec::new();
    }
    let wasm_target_dir = target_dir(root).join("plugin-wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--target", WASM_TARGET, "--profile", PROFILE, "--target-dir"])
        .arg(&wasm_target_dir);
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    for plugin in plugins {
        cmd.args(["-p", &plugin.package]);
    }
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the built-in plugins");
    assert!(
        status.success(),
        "building the built-in plugins for {WASM_TARGET} failed; is the target installed? \
         (`rustup target add {WASM_TARGET}`)"
    );
    plugins
        .iter()
        .map(|p| {
            wasm_target_dir
                .join(WASM_TARGET)
                .join(PROFILE)
                .join(format!("{}.wasm", p.package.replace('-', "_")))
        })
        .collect()
}

fn prebuilt(dir: &Path, plugins: &[Plugin]) -> Vec<PathBuf> {
    plugins
        .iter()
        .map(|p| {
            let path = dir.join(format!("{}.wasm", p.package.replace('-', "_")));
            println!("cargo:rerun-if-changed={}", path.display());
            path
        })
        .collect()
}
