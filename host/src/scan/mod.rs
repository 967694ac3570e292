//! Reading a scanner report into findings: choosing the scanner (named, or
//! the one that claims the bytes with the highest confidence) among the
//! WebAssembly plugins, opted-in native plugins, Copa UpdateManifests and
//! Copa scanner executables on `PATH`.

pub mod copa;
pub mod dylib;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::model::Findings;
use crate::plugin::{PluginError, PluginSet};
use dylib::{NativeError, NativeScanner};

/// Below this confidence a sniff is not a claim.
pub const MIN_CONFIDENCE: u8 = 50;

/// How much of a report scanners see when sniffing (the WIT contract).
pub const SNIFF_PREFIX: usize = 256 << 10;

/// The name `--scanner` uses for Copa UpdateManifests, as in Copa.
pub const COPA_MANIFEST: &str = "native";

/// Every scanner available to this run.
#[derive(Debug)]
pub struct Scanners<'a> {
    pub plugins: &'a PluginSet,
    pub natives: Vec<NativeScanner>,
    /// Native libraries found but not loaded, and why.
    pub skipped_natives: Vec<(PathBuf, String)>,
}

/// Which scanner read the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScannerUsed {
    /// The plugin's name (`trivy`), `native` for a Copa manifest, or the Copa
    /// plugin's name for `copa-NAME`.
    pub name: String,
    /// `plugin`, `native-plugin`, `copa-manifest` or `copa-plugin`.
    pub kind: &'static str,
    /// Where it came from: built-in, a file, or an executable's path.
    pub source: String,
    /// Its sniff confidence when it was picked by sniffing.
    pub confidence: Option<u8>,
}

/// A report read into findings.
#[derive(Debug)]
pub struct Scanned {
    pub findings: Findings,
    pub scanner: ScannerUsed,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading report {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("no scanner recognises {}; confidence out of 100 by scanner: {tried}", path.display())]
    NoTaker { path: PathBuf, tried: String },

    #[error("{} is claimed equally (confidence out of 100 by scanner: {candidates})", path.display())]
    Ambiguous { path: PathBuf, candidates: String },

    #[error("no scanner named `{name}`: no plugin of that name and no `copa-{name}` on PATH{broken}")]
    UnknownScanner { name: String, broken: String },

    #[error("{} could not be read by scanner {plugin}: {message}", path.display())]
    Parse { path: PathBuf, plugin: String, message: String, hint: Option<String> },

    #[error("{} could not be read by scanner {plugin}: {source}", path.display())]
    Plugin { path: PathBuf, plugin: String, source: Box<PluginError> },

    #[error("{}: {message}", path.display())]
    CopaManifest { path: PathBuf, message: String },

    #[error("Copa scanner plugin {} failed on {} ({status}){stderr}", program.display(), path.display())]
    CopaPluginFailed { program: PathBuf, path: PathBuf, status: String, stderr: String },

    #[error("Copa scanner plugin {} printed an invalid UpdateManifest for {}: {message}", program.display(), path.display())]
    CopaPluginOutput { program: PathBuf, path: PathBuf, message: String },

    #[error("{} could not be read by native plugin: {source}", path.display())]
    Native { path: PathBuf, source: NativeError },
}

impl ScanError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoTaker { .. } => {
                Some("name the scanner with --scanner; `caulk plugins list` shows the scanners".into())
            }
            Self::Ambiguous { .. } => Some("name the scanner with --scanner".into()),
            Self::UnknownScanner { .. } => Some(
                "`caulk plugins list` shows the scanners; `--scanner native` reads Copa UpdateManifests"
                    .into(),
            ),
            Self::Parse { hint, .. } => hint.clone(),
            Self::Plugin { source, .. } => source.hint(),
            _ => None,
        }
    }
}

impl<'a> Scanners<'a> {
    /// The plugins, plus the native libraries in `dirs` when `allow_native`.
    pub fn new(plugins: &'a PluginSet, dirs: &[PathBuf], allow_native: bool) -> Self {
        let mut natives = Vec::new();
        let mut skipped_natives = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| dylib::is_native_library(p))
                .collect();
            paths.sort();
            for path in paths {
                if !allow_native {
                    skipped_natives
                        .push((path, "native plugins load only with --allow-native-plugins".to_owned()));
                    continue;
                }
                match NativeScanner::load(&path) {
                    Ok(scanner) => {
                        if plugins.get(&scanner.info.name).is_some()
                            || natives.iter().any(|n: &NativeScanner| n.info.name == scanner.info.name)
                        {
                            skipped_natives.push((path, format!("`{}` is already taken", scanner.info.name)));
                        } else {
                            natives.push(scanner);
                        }
                    }
                    Err(e) => skipped_natives.push((path, e.to_string())),
                }
            }
        }
        Self { plugins, natives, skipped_natives }
    }

    /// Reads `path` with the scanner named `choice`, or the one that claims it.
    pub fn scan(&self, path: &Path, choice: Option<&str>) -> Result<Scanned, ScanError> {
        let bytes =
            std::fs::read(path).map_err(|source| ScanError::Read { path: path.to_owned(), source })?;
        if let Some(name) = choice {
            return self.scan_with(path, &bytes, name, None);
        }
        let (name, confidence) = self.sniff(path, &bytes)?;
        tracing::info!("{}: read with scanner {name} (confidence {confidence})", path.display());
        self.scan_with(path, &bytes, &name, Some(confidence))
    }

    /// The scanner with the single highest claim on `bytes`.
    fn sniff(&self, path: &Path, bytes: &[u8]) -> Result<(String, u8), ScanError> {
        let mut claims: Vec<(String, u8)> = Vec::new();
        // Copying a whole 100 MB report into every scanner costs ~60 ms each.
        let prefix = &bytes[..bytes.len().min(SNIFF_PREFIX)];
        for plugin in self.plugins.scanners() {
            let confidence = plugin.sniff(prefix).unwrap_or_else(|e| {
                tracing::warn!("scanner {} failed to sniff {}: {e}", plugin.name(), path.display());
                0
            });
            claims.push((plugin.name().to_owned(), confidence.min(100)));
        }
        for native in &self.natives {
            claims.push((native.info.name.clone(), native.sniff(prefix)));
        }
        claims.push((COPA_MANIFEST.to_owned(), copa::sniff(bytes)));
        claims.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let listing = |claims: &[(String, u8)]| {
            let mut text = String::new();
            for (i, (name, c)) in claims.iter().enumerate() {
                // `native` alone says nothing to someone who never used Copa.
                let name = if name == COPA_MANIFEST { "native (Copa UpdateManifest)" } else { name.as_str() };
                let _ = write!(text, "{}{name} {c}", if i == 0 { "" } else { ", " });
            }
            text
        };
        match claims.as_slice() {
            [(name, best), rest @ ..] if *best >= MIN_CONFIDENCE => {
                let tied: Vec<_> = rest.iter().filter(|(_, c)| c == best).cloned().collect();
                if tied.is_empty() {
                    Ok((name.clone(), *best))
                } else {
                    let mut all = vec![(name.clone(), *best)];
                    all.extend(tied);
                    Err(ScanError::Ambiguous { path: path.to_owned(), candidates: listing(&all) })
                }
            }
            _ => Err(ScanError::NoTaker { path: path.to_owned(), tried: listing(&claims) }),
        }
    }

    fn scan_with(
        &self,
        path: &Path,
        bytes: &[u8],
        name: &str,
        confidence: Option<u8>,
    ) -> Result<Scanned, ScanError> {
        if name == COPA_MANIFEST {
            let findings = copa::parse(bytes)
                .map_err(|message| ScanError::CopaManifest { path: path.to_owned(), message })?;
            let scanner = ScannerUsed {
                name: name.to_owned(),
                kind: "copa-manifest",
                source: "built-in".into(),
                confidence,
            };
            return Ok(Scanned { findings, scanner });
        }
        if let Some(plugin) = self.plugins.get(name) {
            let findings = plugin.parse(bytes).map_err(|e| match e {
                PluginError::Returned { message, hint, .. } => {
                    ScanError::Parse { path: path.to_owned(), plugin: name.to_owned(), message, hint }
                }
                other => ScanError::Plugin {
                    path: path.to_owned(),
                    plugin: name.to_owned(),
                    source: Box::new(other),
                },
            })?;
            let scanner = ScannerUsed {
                name: name.to_owned(),
                kind: "plugin",
                source: plugin.source().to_string(),
                confidence,
            };
            return Ok(Scanned { findings, scanner });
        }
        if let Some(native) = self.natives.iter().find(|n| n.info.name == name) {
            let findings =
                native.parse(bytes).map_err(|source| ScanError::Native { path: path.to_owned(), source })?;
            let scanner = ScannerUsed {
                name: name.to_owned(),
                kind: "native-plugin",
                source: native.path.display().to_string(),
                confidence,
            };
            return Ok(Scanned { findings, scanner });
        }
        if let Some(program) = copa_plugin(name) {
            let findings = run_copa_plugin(&program, path)?;
            let scanner = ScannerUsed {
                name: name.to_owned(),
                kind: "copa-plugin",
                source: program.display().to_string(),
                confidence,
            };
            return Ok(Scanned { findings, scanner });
        }
        let mut broken = String::new();
        for b in &self.plugins.broken {
            let _ = write!(broken, "; {} failed to load: {}", b.path.display(), b.error);
        }
        for (p, why) in &self.skipped_natives {
            let _ = write!(broken, "; {} not loaded: {why}", p.display());
        }
        Err(ScanError::UnknownScanner { name: name.to_owned(), broken })
    }
}

/// `copa-NAME` on `PATH`, for names that can be part of a file name.
fn copa_plugin(name: &str) -> Option<PathBuf> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(format!("copa-{name}"))).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs a Copa scanner plugin: `copa-NAME REPORT`, an UpdateManifest on
/// stdout; stderr is kept apart and shown only when it fails.
fn run_copa_plugin(program: &Path, report: &Path) -> Result<Findings, ScanError> {
    let output = Command::new(program)
        .arg(report)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ScanError::CopaPluginFailed {
            program: program.to_owned(),
            path: report.to_owned(),
            status: format!("could not start: {e}"),
            stderr: String::new(),
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(ScanError::CopaPluginFailed {
            program: program.to_owned(),
            path: report.to_owned(),
            status: output.status.to_string(),
            stderr: if tail.is_empty() { String::new() } else { format!(":\n  {}", tail.join("\n  ")) },
        });
    }
    if !stderr.trim().is_empty() {
        tracing::debug!("{} wrote on stderr: {}", program.display(), stderr.trim());
    }
    copa::parse(&output.stdout).map_err(|message| ScanError::CopaPluginOutput {
        program: program.to_owned(),
        path: report.to_owned(),
        message,
    })
}
