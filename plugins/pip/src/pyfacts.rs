//! What an interpreter in the image says about itself (the answer to
//! [`crate::scripts::PYTHON_FACTS`]), and marker environments made up for
//! environments no interpreter can be run for.

use std::collections::BTreeMap;

use crate::pep508::MarkerEnv;
use serde::Deserialize;

use crate::scripts::PYTHON_FACTS_PREFIX;

/// The parsed facts line.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PythonFacts {
    pub markers: BTreeMap<String, String>,
    pub executable: Option<String>,
    pub prefix: Option<String>,
    pub base_prefix: Option<String>,
    pub purelib: Option<String>,
    pub platlib: Option<String>,
    pub user_site: Option<String>,
    #[serde(default)]
    pub sys_path: Vec<String>,
    #[serde(default)]
    pub libc: Vec<String>,
    pub pip: Option<String>,
}

impl PythonFacts {
    /// Finds the facts line in a command's stdout.
    pub fn parse(stdout: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(stdout);
        let line = text.lines().rev().find_map(|l| l.strip_prefix(PYTHON_FACTS_PREFIX))?;
        serde_json::from_str(line).ok()
    }

    pub fn marker(&self, key: &str) -> &str {
        self.markers.get(key).map_or("", String::as_str)
    }

    /// The PEP 508 marker environment, when the interpreter's versions parse.
    pub fn marker_environment(&self) -> Option<MarkerEnv> {
        MarkerEnv::new(|var| self.markers.get(var).cloned())
    }

    /// `(major, minor)` of the interpreter.
    pub fn python_version(&self) -> Option<(u64, u64)> {
        parse_major_minor(self.marker("python_version"))
    }

    /// `glibc 2.36` as `(2, 36)`.
    pub fn glibc(&self) -> Option<(u64, u64)> {
        match self.libc.as_slice() {
            [name, version, ..] if name == "glibc" => parse_major_minor(version),
            _ => None,
        }
    }
}

/// `3.11` (or `3.11.2`) as `(3, 11)`.
pub fn parse_major_minor(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The machine name Python reports for an OCI architecture.
pub fn machine(architecture: &str, variant: Option<&str>) -> &'static str {
    match (architecture, variant) {
        ("amd64", _) => "x86_64",
        ("arm64", _) => "aarch64",
        ("arm", Some("v6")) => "armv6l",
        ("arm", _) => "armv7l",
        ("386", _) => "i686",
        ("ppc64le", _) => "ppc64le",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        ("mips64le", _) => "mips64",
        ("loong64", _) => "loongarch64",
        _ => "unknown",
    }
}

/// A CPython on Linux of version `major.minor` (patch level unknown: `.0`),
/// for an environment whose interpreter cannot run.
pub fn assumed_markers(major: u64, minor: u64, machine: &str) -> Option<MarkerEnv> {
    let full = format!("{major}.{minor}.0");
    MarkerEnv::new(|var| {
        Some(match var {
            "implementation_name" => "cpython".to_owned(),
            "implementation_version" | "python_full_version" => full.clone(),
            "os_name" => "posix".to_owned(),
            "platform_machine" => machine.to_owned(),
            "platform_python_implementation" => "CPython".to_owned(),
            "platform_system" => "Linux".to_owned(),
            "python_version" => format!("{major}.{minor}"),
            "sys_platform" => "linux".to_owned(),
            "platform_release" | "platform_version" => String::new(),
            _ => return None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_after_noise() {
        let out = b"sitecustomize says hi\ncaulk-python-facts {\"markers\": {\"python_version\": \"3.11\", \"python_full_version\": \"3.11.2\", \"implementation_version\": \"3.11.2\"}, \"libc\": [\"glibc\", \"2.36\"], \"pip\": null}\n";
        let facts = PythonFacts::parse(out).unwrap();
        assert_eq!(facts.python_version(), Some((3, 11)));
        assert_eq!(facts.glibc(), Some((2, 36)));
        assert!(facts.marker_environment().is_none(), "eight marker variables missing");
        assert!(PythonFacts::parse(b"Traceback ...").is_none());
        let env = assumed_markers(3, 9, "aarch64").unwrap();
        assert_eq!(
            (env.get("python_full_version"), env.get("platform_machine")),
            (Some("3.9.0"), Some("aarch64"))
        );
    }
}
