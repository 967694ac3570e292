//! The image's rpm database: where it is, and what `rpm -qa` says is in it.
//!
//! The database is binary (sqlite `rpmdb.sqlite` since rpm 4.16, Berkeley DB
//! `Packages` before, ndb `Packages.db` on SUSE), so the plugin never reads
//! it itself: `rpm -qa` with [`QUERY_FORMAT`] runs on the image (its own rpm,
//! or the host's with `--root`) and this module reads the output. The
//! directory is passed as `--dbpath` every time: Debian's rpm, used as the
//! host's, defaults to `~/.rpmdb`.

use std::collections::BTreeMap;

use caulk_sdk::version::rpm::Evr;

/// Where distributions keep the rpm database: `/var/lib/rpm`, or
/// `/usr/lib/sysimage/rpm` (Fedora 36+, openSUSE, with `/var/lib/rpm` a
/// symbolic link to it).
pub const DB_DIRS: [&str; 2] = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];

/// The database file of each backend.
pub const DB_FILES: [(&str, &str); 3] =
    [("rpmdb.sqlite", "sqlite"), ("Packages.db", "ndb"), ("Packages", "bdb")];

/// Azure Linux (CBL-Mariner) distroless images list their packages here
/// for scanners.
pub const MANIFEST_DIR: &str = "/var/lib/rpmmanifest";
pub const MANIFEST_1: &str = "/var/lib/rpmmanifest/container-manifest-1";
pub const MANIFEST_2: &str = "/var/lib/rpmmanifest/container-manifest-2";

/// One line per package: name, epoch (`(none)` when unset), version,
/// release, architecture.
pub const QUERY_FORMAT: &str = "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n";

/// `container-manifest-1`: `name-version-release.arch`, as `rpm -qa` prints.
pub const MANIFEST_1_FORMAT: &str = "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n";

/// `container-manifest-2`: the tab-separated fields Azure Linux writes and
/// Trivy, Syft and Copa read (name, version-release, install time, build
/// time, vendor, epoch, size, arch, epoch number, source rpm).
pub const MANIFEST_2_FORMAT: &str = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{INSTALLTIME}\\t%{BUILDTIME}\\t%{VENDOR}\\t%{EPOCH}\\t%{SIZE}\\t%{ARCH}\\t%{EPOCHNUM}\\t%{SOURCERPM}\\n";

/// A database found in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbLocation {
    /// The directory, passed as `--dbpath`.
    pub dir: String,
    /// `sqlite`, `ndb` or `bdb`.
    pub backend: &'static str,
}

/// The database among `paths` (files that exist in the image), preferring
/// `/var/lib/rpm` and, within a directory, sqlite over ndb over bdb.
pub fn locate<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<DbLocation> {
    let paths: Vec<&str> = paths.into_iter().collect();
    DB_DIRS.iter().find_map(|dir| {
        DB_FILES.iter().find_map(|(file, backend)| {
            let wanted = format!("{dir}/{file}");
            paths.contains(&wanted.as_str()).then(|| DbLocation { dir: (*dir).to_owned(), backend })
        })
    })
}

/// Every database file path, for a `files` probe.
pub fn db_paths() -> Vec<String> {
    DB_DIRS.iter().flat_map(|dir| DB_FILES.iter().map(move |(file, _)| format!("{dir}/{file}"))).collect()
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// `[epoch:]version-release`, the epoch only when the package has one.
    pub evr: String,
    pub arch: String,
}

impl Package {
    pub fn version(&self) -> Option<Evr> {
        self.evr.parse().ok()
    }
}

/// What `rpm -qa --qf QUERY_FORMAT` printed, by name. A name may be
/// installed more than once (one per architecture, or kernels).
#[derive(Debug, Clone, Default)]
pub struct Installed {
    packages: BTreeMap<String, Vec<Package>>,
}

/// Why the query output cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of `rpm -qa` is not name, epoch, version, release and arch separated by tabs: {text:?}")]
pub struct QueryError {
    pub line: usize,
    pub text: String,
}

impl Installed {
    pub fn parse(output: &[u8]) -> Result<Self, QueryError> {
        Self::read(&String::from_utf8_lossy(output), 5, |fields| {
            (fields[0], fields[1], fields[2], fields[3], fields[4])
        })
    }

    /// The packages `container-manifest-2` lists: name, version-release, ...,
    /// epoch (6th), ..., arch (8th), tab-separated.
    pub fn from_manifest(contents: &[u8]) -> Result<Self, QueryError> {
        Self::read(&String::from_utf8_lossy(contents), 8, |fields| {
            let (version, release) = fields[1].rsplit_once('-').unwrap_or((fields[1], "(none)"));
            (fields[0], fields[5], version, release, fields[7])
        })
    }

    /// Lines of at least `width` tab-separated fields, cut by `pick` into
    /// name, epoch, version, release and arch.
    fn read<'a>(
        text: &'a str,
        width: usize,
        pick: impl Fn(&[&'a str]) -> (&'a str, &'a str, &'a str, &'a str, &'a str),
    ) -> Result<Self, QueryError> {
        let mut packages: BTreeMap<String, Vec<Package>> = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let bad = || QueryError { line: index + 1, text: line.chars().take(120).collect() };
            if fields.len() < width || (width == 5 && fields.len() != 5) {
                return Err(bad());
            }
            let (name, epoch, version, release, arch) = pick(&fields);
            if name.is_empty() || version.is_empty() {
                return Err(bad());
            }
            let epoch = match epoch {
                "(none)" | "" => None,
                digits if digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits),
                _ => return Err(bad()),
            };
            let mut evr = epoch.map(|e| format!("{e}:")).unwrap_or_default();
            evr.push_str(version);
            if release != "(none)" && !release.is_empty() {
                evr.push('-');
                evr.push_str(release);
            }
            packages.entry(name.to_owned()).or_default().push(Package {
                name: name.to_owned(),
                evr,
                arch: arch.to_owned(),
            });
        }
        Ok(Self { packages })
    }

    /// Every installed instance of `name`.
    pub fn get(&self, name: &str) -> &[Package] {
        self.packages.get(name).map_or(&[], Vec::as_slice)
    }

    /// The lowest installed version of `name`: the one a fix must reach.
    pub fn lowest(&self, name: &str) -> Option<&Package> {
        self.get(name).iter().min_by(|a, b| match (a.version(), b.version()) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => a.evr.cmp(&b.evr),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.packages.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_output_is_read_with_epochs_and_multiple_arches() {
        let out = b"glibc\t(none)\t2.34\t100.el9\tx86_64\nglibc\t(none)\t2.34\t99.el9\ti686\n\
                    tar\t2\t1.34\t6.el9\tx86_64\ngpg-pubkey\t(none)\tfd431d51\t4ae0493b\t(none)\n";
        let installed = Installed::parse(out).unwrap();
        assert_eq!(installed.get("tar")[0].evr, "2:1.34-6.el9");
        assert_eq!(installed.get("glibc").len(), 2);
        assert_eq!(installed.lowest("glibc").unwrap().evr, "2.34-99.el9");
        assert!(installed.get("openssl").is_empty());
    }

    #[test]
    fn garbage_names_its_line() {
        let err = Installed::parse(b"glibc\t(none)\t2.34\t1\tx86_64\nnot a package line\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(Installed::parse(b"a\tx\t1\t1\tnoarch\n").is_err(), "a non-numeric epoch");
    }

    #[test]
    fn azure_linux_manifests_are_read_with_their_epochs() {
        let manifest = b"openssl\t3.3.2-1.azl3\t1730000000\t1729000000\tMicrosoft Corporation\t(none)\t100\tx86_64\t0\topenssl-3.3.2-1.azl3.src.rpm\n\
                         tar\t1.35-1.azl3\t1\t1\tMicrosoft Corporation\t2\t9\tx86_64\t2\ttar-1.35-1.azl3.src.rpm\n";
        let installed = Installed::from_manifest(manifest).unwrap();
        assert_eq!(installed.get("openssl")[0].evr, "3.3.2-1.azl3");
        assert_eq!(installed.get("tar")[0].evr, "2:1.35-1.azl3");
        assert_eq!(Installed::from_manifest(b"openssl\t3.3.2-1\n").unwrap_err().line, 1);
    }

    #[test]
    fn the_database_is_found_by_its_file() {
        let found = locate(["/usr/lib/sysimage/rpm/Packages.db"]).unwrap();
        assert_eq!(found, DbLocation { dir: "/usr/lib/sysimage/rpm".into(), backend: "ndb" });
        let found = locate(["/var/lib/rpm/Packages", "/var/lib/rpm/rpmdb.sqlite"]).unwrap();
        assert_eq!(found.backend, "sqlite");
        assert_eq!(locate(["/var/lib/rpm/other"]), None);
    }
}
