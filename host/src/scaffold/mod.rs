//! `caulk plugins new`: writes a plugin crate that builds and passes its
//! tests as generated. The templates are compiled into the binary, so the
//! command works wherever caulk was installed; only the SDK comes from a
//! source checkout (it is not on crates.io).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which plugin to scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Scanner,
    Updater,
}

impl Kind {
    /// `scanner` or `updater`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scanner => "scanner",
            Self::Updater => "updater",
        }
    }

    /// (path in the crate, template) pairs; `{{name}}` in a path is filled in too.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        const COMMON: [(&str, &str); 2] = [
            ("Cargo.toml", include_str!("templates/Cargo.toml.tmpl")),
            (".gitignore", include_str!("templates/gitignore.tmpl")),
        ];
        match self {
            Self::Scanner => &[
                COMMON[0],
                COMMON[1],
                ("README.md", include_str!("templates/scanner/README.md.tmpl")),
                ("src/lib.rs", include_str!("templates/scanner/lib.rs.tmpl")),
                ("tests/through_caulk.rs", include_str!("templates/scanner/through_caulk.rs.tmpl")),
                ("report.txt", include_str!("templates/scanner/report.txt.tmpl")),
            ],
            Self::Updater => &[
                COMMON[0],
                COMMON[1],
                ("README.md", include_str!("templates/updater/README.md.tmpl")),
                ("src/lib.rs", include_str!("templates/updater/lib.rs.tmpl")),
                ("tests/through_caulk.rs", include_str!("templates/updater/through_caulk.rs.tmpl")),
                ("tests/root/etc/{{name}}/packages", include_str!("templates/updater/packages.tmpl")),
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("`{name}` cannot name a plugin: {problem}")]
    BadName { name: String, problem: &'static str },

    #[error("{} is not empty: caulk plugins new writes only into a new or empty directory", dir.display())]
    NotEmpty { dir: PathBuf },

    #[error("--sdk {}: {problem}", path.display())]
    BadSdk { path: PathBuf, problem: String },

    #[error("no caulk SDK to depend on: this caulk was built from {}, which is no longer there", built_from.display())]
    NoDefaultSdk { built_from: PathBuf },

    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl ScaffoldError {
    pub fn hint(&self) -> Option<String> {
        Some(
            match self {
                Self::BadName { .. } => {
                    "use lowercase ASCII letters, digits and `-`, starting with a letter (e.g. `my-scanner`)"
                }
                Self::NotEmpty { .. } => "pass --path with a new directory",
                Self::BadSdk { .. } | Self::NoDefaultSdk { .. } => {
                    "the SDK is not on crates.io: pass --sdk PATH, the sdk/ directory of a caulk source checkout"
                }
                Self::Write { .. } => return None,
            }
            .to_owned(),
        )
    }

    /// Whether the user asked for something impossible (exit code 2).
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Write { .. })
    }
}

/// Cargo refuses these as package names, or they clash with the SDK.
const RESERVED: &[&str] = &[
    "caulk-sdk",
    "std",
    "core",
    "alloc",
    "proc-macro",
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
    // Rust keywords: the library target takes the package's name.
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
];

/// The rule for a scaffolded plugin's name, which is also its crate name:
/// what caulk accepts as a plugin name (lowercase ASCII letters, digits and
/// `-`, starting with a letter, at most 64 bytes) and what Cargo accepts as
/// a package name.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let problem = if name.is_empty() {
        "the name is empty"
    } else if name.len() > 64 {
        "longer than 64 bytes"
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "it must start with a lowercase ASCII letter"
    } else if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        "only lowercase ASCII letters, digits and `-` may appear"
    } else if name.ends_with('-') {
        "it must not end with `-`"
    } else if RESERVED.contains(&name) {
        "Cargo reserves it, or it is a Rust keyword"
    } else {
        return Ok(());
    };
    Err(ScaffoldError::BadName { name: name.to_owned(), problem })
}

/// The SDK this binary was built with, when its source is still there.
pub fn default_sdk() -> Result<PathBuf, ScaffoldError> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sdk");
    check_sdk(&built_from).map_err(|_| ScaffoldError::NoDefaultSdk { built_from })
}

/// `path`, absolute, when it holds the `caulk-sdk` crate.
pub fn check_sdk(path: &Path) -> Result<PathBuf, ScaffoldError> {
    let bad = |problem: String| ScaffoldError::BadSdk { path: path.to_owned(), problem };
    let abs = path.canonicalize().map_err(|e| bad(e.to_string()))?;
    let manifest = std::fs::read_to_string(abs.join("Cargo.toml"))
        .map_err(|e| bad(format!("no readable Cargo.toml ({e})")))?;
    if !manifest.lines().any(|l| l.replace(' ', "") == "name=\"caulk-sdk\"") {
        return Err(bad("its Cargo.toml is not the caulk-sdk crate's".to_owned()));
    }
    if abs.to_str().is_none() {
        return Err(bad("the path is not UTF-8, so Cargo.toml cannot name it".to_owned()));
    }
    Ok(abs)
}

/// What was written.
#[derive(Debug)]
pub struct Scaffolded {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// Whether the SDK checkout's Cargo.lock was copied in.
    pub locked: bool,
}

/// Writes a `kind` plugin crate called `name` into `dir` (made if missing,
/// refused if not empty), depending on the SDK at `sdk` (from
/// [`check_sdk`] or [`default_sdk`]).
pub fn scaffold(kind: Kind, name: &str, dir: &Path, sdk: &Path) -> Result<Scaffolded, ScaffoldError> {
    check_name(name)?;
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Write { path, source }
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ScaffoldError::NotEmpty { dir: dir.to_owned() });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        }
        Err(e) => return Err(write_err(dir)(e)),
    }
    let sdk_text = sdk.to_str().expect("check_sdk refuses non-UTF-8 paths");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{type}}", &type_name(name))
            .replace("{{kind}}", kind.name())
            .replace("{{sdk}}", &toml_escape(sdk_text))
    };
    let mut files = Vec::new();
    for (path, template) in kind.files() {
        let path = dir.join(fill(path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err(parent))?;
        }
        std::fs::write(&path, fill(template)).map_err(write_err(&path))?;
        files.push(path);
    }
    // The versions the SDK is built and tested with: Cargo keeps the
    // entries the new crate uses and drops the rest, so its first build
    // needs nothing the checkout's build did not already fetch.
    let lock = sdk.parent().map(|root| root.join("Cargo.lock"));
    let locked = match lock {
        Some(lock) if lock.is_file() => {
            let dest = dir.join("Cargo.lock");
            std::fs::copy(&lock, &dest).map_err(write_err(&dest))?;
            files.push(dest);
            true
        }
        _ => false,
    };
    Ok(Scaffolded { dir: dir.to_owned(), files, locked })
}

/// `my-scanner-2` → `MyScanner2Plugin`. The suffix keeps the type clear of
/// the names the templates import and of the prelude (`updater` would
/// otherwise become `Updater`, `string` `String`), so every valid plugin
/// name scaffolds a crate that compiles.
fn type_name(name: &str) -> String {
    let base: String = name
        .split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if base.ends_with("Plugin") { base } else { base + "Plugin" }
}

/// The inside of a TOML basic string.
fn toml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_plugin_and_crate_rules() {
        for good in ["my-scanner", "toy", "a2", "x-1-y"] {
            check_name(good).unwrap();
        }
        for (bad, problem) in [
            ("", "empty"),
            ("My-Scanner", "start with"),
            ("2fast", "start with"),
            ("my_scanner", "only lowercase"),
            ("a/b", "only lowercase"),
            ("../x", "start with"),
            ("trailing-", "end with"),
            ("fn", "keyword"),
            ("caulk-sdk", "reserves"),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.to_string().contains(problem), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("`{bad}`")), "the error names the input: {err}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn type_names_and_toml_strings() {
        assert_eq!(type_name("my-scanner-2"), "MyScanner2Plugin");
        assert_eq!(type_name("toy"), "ToyPlugin");
        assert_eq!(type_name("updater"), "UpdaterPlugin");
        assert_eq!(type_name("my-plugin"), "MyPlugin");
        assert_eq!(toml_escape(r#"C:\a "b""#), r#"C:\\a \"b\""#);
        assert_eq!(toml_escape("a\nb"), "a\\u000Ab");
    }

    #[test]
    fn every_placeholder_is_filled_and_a_non_empty_dir_is_refused() {
        let sdk = default_sdk().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        for kind in [Kind::Scanner, Kind::Updater] {
            let dir = tmp.path().join(kind.name());
            let done = scaffold(kind, "my-plugin", &dir, &sdk).unwrap();
            assert!(done.locked);
            for file in &done.files {
                let text = std::fs::read_to_string(file).unwrap();
                assert!(!text.contains("{{"), "{} keeps a placeholder", file.display());
            }
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            assert!(manifest.contains(&format!("path = \"{}\"", sdk.display())), "{manifest}");
            let err = scaffold(kind, "my-plugin", &dir, &sdk).unwrap_err();
            assert!(matches!(err, ScaffoldError::NotEmpty { .. }), "{err}");
        }
        assert!(tmp.path().join("updater/tests/root/etc/my-plugin/packages").is_file());
        let err = check_sdk(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("Cargo.toml"), "{err}");
    }
}
