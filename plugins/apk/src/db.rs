//! apk-tools' own files: the installed database, the world file and the
//! repository list.
//!
//! `/lib/apk/db/installed` is a sequence of package blocks separated by
//! blank lines, each line one field `K:value` with a one-letter key, the
//! format of `APKINDEX` (apk-tools' `doc/apk-v2.5`, "Index and installed
//! database"): `P:` name, `V:` version, `A:` architecture, `o:` origin (the
//! source package), `p:` provides, `D:` dependencies, then `F:`/`R:`/`Z:`
//! lines for the files. Keys this updater does not use are skipped, so
//! newer apk versions' additions do not break it; a line that is not a
//! field, a block without name or version, or a repeated name field is an
//! error naming the line, since apk would not have written it.

use std::collections::BTreeSet;

use caulk_sdk::version::apk::Version;

/// Where apk keeps its database of installed packages.
pub const INSTALLED_PATH: &str = "/lib/apk/db/installed";
pub const WORLD_PATH: &str = "/etc/apk/world";
pub const REPOSITORIES_PATH: &str = "/etc/apk/repositories";
/// Where the image keeps the keys its repositories are signed with.
pub const KEYS_DIR: &str = "/etc/apk/keys";

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    /// The source package (`o:`), when recorded.
    pub origin: Option<String>,
    /// Names from `p:` (`so:libssl.so.3`, `cmd:openssl`, a virtual name),
    /// without versions.
    pub provides: Vec<String>,
    /// The line of its `P:` field, for messages.
    pub line: usize,
}

impl Package {
    /// A virtual package made by `apk add --virtual` (`.build-deps`): not
    /// from any repository, so nothing can upgrade it.
    pub fn is_virtual(&self) -> bool {
        self.name.starts_with('.')
    }
}

/// Why the installed database cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("{INSTALLED_PATH} line {line}: the {key}: field is not UTF-8 text")]
    NotText { line: usize, key: char },
    #[error("{INSTALLED_PATH} line {line}: {shown:?} is not a `K:value` field")]
    NotField { line: usize, shown: String },
    #[error("{INSTALLED_PATH} line {line}: a package block without a P: (name) field")]
    NoName { line: usize },
    #[error("{INSTALLED_PATH} line {line}: package {name:?} has no V: (version) field")]
    NoVersion { line: usize, name: String },
    #[error("{INSTALLED_PATH} line {line}: a second {key}: field in one package block")]
    Repeated { line: usize, key: char },
}

/// The parsed installed database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    packages: Vec<Package>,
}

/// A field being collected.
#[derive(Default)]
struct Block {
    start: usize,
    name: Option<(String, usize)>,
    version: Option<String>,
    arch: Option<String>,
    origin: Option<String>,
    provides: Vec<String>,
}

impl Block {
    fn finish(self, packages: &mut Vec<Package>) -> Result<(), DbError> {
        let Some((name, line)) = self.name else {
            return Err(DbError::NoName { line: self.start });
        };
        let Some(version) = self.version else {
            return Err(DbError::NoVersion { line, name });
        };
        packages.push(Package {
            name,
            version,
            arch: self.arch,
            origin: self.origin,
            provides: self.provides,
            line,
        });
        Ok(())
    }
}

/// At most this much of a bad line goes into a message.
const SHOWN: usize = 60;

impl Installed {
    pub fn parse(bytes: &[u8]) -> Result<Self, DbError> {
        let mut packages = Vec::new();
        let mut block: Option<Block> = None;
        // Bytes, not text: file names (`R:`) and descriptions may be in any
        // encoding; only the fields used here must be UTF-8.
        for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() {
                if let Some(done) = block.take() {
                    done.finish(&mut packages)?;
                }
                continue;
            }
            let not_field = || DbError::NotField {
                line,
                shown: String::from_utf8_lossy(&raw[..raw.len().min(SHOWN)]).into_owned(),
            };
            let (key, value) = match raw {
                [key, b':', value @ ..] if key.is_ascii_alphabetic() => (char::from(*key), value),
                _ => return Err(not_field()),
            };
            if !matches!(key, 'P' | 'V' | 'A' | 'o' | 'p') {
                block.get_or_insert_with(|| Block { start: line, ..Block::default() });
                continue;
            }
            let value = std::str::from_utf8(value).map_err(|_| DbError::NotText { line, key })?;
            let current = block.get_or_insert_with(|| Block { start: line, ..Block::default() });
            let once = |slot: &mut Option<String>| {
                if slot.is_some() {
                    return Err(DbError::Repeated { line, key });
                }
                *slot = Some(value.to_owned());
                Ok(())
            };
            match key {
                'P' => {
                    if current.name.is_some() {
                        return Err(DbError::Repeated { line, key });
                    }
                    current.name = Some((value.to_owned(), line));
                }
                'V' => once(&mut current.version)?,
                'A' => once(&mut current.arch)?,
                'o' => once(&mut current.origin)?,
                'p' => current.provides.extend(value.split_whitespace().map(|p| provided_name(p).to_owned())),
                _ => {}
            }
        }
        if let Some(done) = block.take() {
            done.finish(&mut packages)?;
        }
        Ok(Self { packages })
    }

    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// The installed package called `name`; apk installs one per name.
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// Installed packages that provide `name` without being called so.
    pub fn providers(&self, name: &str) -> Vec<&Package> {
        self.packages.iter().filter(|p| p.provides.iter().any(|q| q == name)).collect()
    }

    /// Installed packages built from origin `origin`.
    pub fn built_from(&self, origin: &str) -> Vec<&Package> {
        self.packages.iter().filter(|p| p.origin.as_deref() == Some(origin)).collect()
    }
}

/// `so:libssl.so.3` from `so:libssl.so.3=3`; a constraint's name part.
fn provided_name(text: &str) -> &str {
    text.find(['<', '>', '=', '~']).map_or(text, |at| &text[..at])
}

/// `/etc/apk/world`: the constraints the image asked for, whitespace
/// separated (apk-world(5)), read as apk reads a dependency:
/// `[!]name[@tag][OP version]`, where OP is made of `<`, `>`, `=` and `~`
/// (`><` pins a package's checksum): `curl`, `busybox>=1.36`,
/// `curl@edge=8.5.0-r0`, `!bash`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    names: BTreeSet<String>,
    /// Constraints that can hold a name back (any but `>` and `>=`).
    pins: Vec<Pin>,
}

/// One world constraint that can hold a package back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pin {
    name: String,
    operator: String,
    version: String,
    /// As the world file has it, to quote back.
    written: String,
}

impl World {
    /// Tolerant: world is only consulted to explain what stays as it was, so
    /// a damaged one (not text) reads as listing nothing.
    pub fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let mut world = Self::default();
        for constraint in text.split_whitespace().filter(|c| !c.starts_with('!')) {
            let end = constraint.find(['<', '>', '=', '~']).unwrap_or(constraint.len());
            let (name_tag, rest) = constraint.split_at(end);
            let name = name_tag.split_once('@').map_or(name_tag, |(name, _)| name);
            let op_len = rest.find(|c: char| !matches!(c, '<' | '>' | '=' | '~')).unwrap_or(rest.len());
            let (operator, version) = rest.split_at(op_len);
            if !operator.is_empty() && operator != ">" && operator != ">=" {
                world.pins.push(Pin {
                    name: name.to_owned(),
                    operator: operator.to_owned(),
                    version: version.to_owned(),
                    written: constraint.to_owned(),
                });
            }
            world.names.insert(name.to_owned());
        }
        world
    }

    /// The world constraint on `name` that `needed` does not meet (apk would
    /// refuse to install it): `openssl=3.1.4-r0`, `jq<1.7`, `busybox~1.35`
    /// against a fix in 1.36, or a checksum pin. Constraints the fix meets
    /// (`busybox~1.36` for 1.36.1-r19) hold nothing back.
    pub fn blocking(&self, name: &str, needed: &Version) -> Option<&str> {
        self.pins
            .iter()
            .find(|pin| pin.name == name && !meets(needed, &pin.operator, &pin.version))
            .map(|pin| pin.written.as_str())
    }

    /// Whether the image asked for `name` itself (else it is a dependency).
    pub fn lists(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Virtual packages of this updater left behind by an interrupted run.
    pub fn leftovers(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).filter(|n| n.starts_with(crate::plan::VIRTUAL_PREFIX)).collect()
    }
}

/// Whether `version` meets `OPERATOR version` of a world constraint. A
/// checksum pin (`><`), an operator apk does not have or a version that is
/// not one holds the package where it is.
fn meets(version: &Version, operator: &str, constraint: &str) -> bool {
    let Ok(bound) = constraint.parse::<Version>() else { return false };
    match operator {
        "=" => *version == bound,
        "<" => *version < bound,
        "<=" | "=<" => *version <= bound,
        "~" | "~=" | "=~" => version.fuzzy_matches(&bound),
        _ => false,
    }
}

/// The repositories of `/etc/apk/repositories` (and `repositories.d`):
/// one URL or path per line, optionally `@tag ` first; `#` comments.
pub fn repositories(files: &[&[u8]]) -> Vec<String> {
    files
        .iter()
        .flat_map(|bytes| {
            String::from_utf8_lossy(bytes).lines().map(str::trim).map(str::to_owned).collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_with_files_and_unknown_keys() {
        let db = Installed::parse(
            b"C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:1\nI:2\no:musl\np:so:libc.musl-x86_64.so.1=1\n\
              F:lib\nR:ld-musl-x86_64.so.1\nZ:Q1x=\nX:future\n",
        )
        .unwrap();
        let musl = db.get("musl").unwrap();
        assert_eq!(musl.version, "1.2.4_git20230717-r4");
        assert_eq!(musl.arch.as_deref(), Some("x86_64"));
        assert_eq!(musl.provides, ["so:libc.musl-x86_64.so.1"]);
        assert_eq!(db.providers("so:libc.musl-x86_64.so.1").len(), 1);
    }

    #[test]
    fn damage_is_an_error_naming_the_line() {
        assert_eq!(
            Installed::parse(b"P:a\nV:1\n\nnonsense\n"),
            Err(DbError::NotField { line: 4, shown: "nonsense".into() })
        );
        assert_eq!(Installed::parse(b"V:1\n"), Err(DbError::NoName { line: 1 }));
        assert_eq!(Installed::parse(b"P:a\nA:x\n"), Err(DbError::NoVersion { line: 1, name: "a".into() }));
        assert_eq!(Installed::parse(b"P:a\nP:b\nV:1\n"), Err(DbError::Repeated { line: 2, key: 'P' }));
        assert_eq!(Installed::parse(b"P:a\nV:\xff"), Err(DbError::NotText { line: 2, key: 'V' }));
        assert!(Installed::parse(b"P:a\nV:1\nR:caf\xe9\n").is_ok(), "Latin-1 file names are fine");
        assert_eq!(Installed::parse(b"\n\n"), Ok(Installed::default()));
        assert!(matches!(Installed::parse("é:x".as_bytes()), Err(DbError::NotField { line: 1, .. })));
    }

    #[test]
    fn world_names_without_constraints() {
        let world = World::parse(b"alpine-baselayout\nbusybox>=1.36\ncurl@edge\n!bash\n.caulk-musl>=1\n");
        assert!(world.lists("busybox") && world.lists("curl") && world.lists("alpine-baselayout"));
        assert!(!world.lists("bash") && !world.lists("musl"));
        assert_eq!(world.leftovers(), [".caulk-musl"]);
    }

    #[test]
    fn world_constraints_hold_back_only_a_fix_they_refuse() {
        let v = |text: &str| text.parse::<Version>().unwrap();
        let world = World::parse(
            b"zlib=1.3-r0 curl@edge=8.5.0-r0 busybox~1.36 jq<2 xz@main sqlite>=3.40 glibc><Q1abc= musl<=1.2.4-r2\n",
        );
        assert!(world.lists("curl") && world.lists("glibc") && !world.lists("curl@edge"));
        for (name, fix, blocked_by) in [
            ("zlib", "1.3.1-r0", Some("zlib=1.3-r0")),
            ("curl", "8.6.0-r0", Some("curl@edge=8.5.0-r0")),
            ("busybox", "1.36.1-r19", None),
            ("busybox", "1.37.0-r0", Some("busybox~1.36")),
            ("jq", "1.7.1-r0", None),
            ("jq", "2.0-r0", Some("jq<2")),
            ("xz", "5.6.2-r0", None),
            ("sqlite", "3.45.0-r0", None),
            ("glibc", "2.40-r0", Some("glibc><Q1abc=")),
            ("musl", "1.2.4-r2", None),
            ("musl", "1.2.5-r0", Some("musl<=1.2.4-r2")),
        ] {
            assert_eq!(world.blocking(name, &v(fix)), blocked_by, "{name} {fix}");
        }
    }
}
