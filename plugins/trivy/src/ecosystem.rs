//! Trivy's result types and OS families in the ecosystem vocabulary of
//! `caulk:plugin/types` (`deb`, `apk`, `rpm`, `python`, `npm`, ...).

/// The package format of an OS family as Trivy names it (`Metadata.OS.Family`,
/// the `Type` of an `os-pkgs` result, or the family in a legacy target such
/// as `debian:10.8 (debian 10.8)`); `None` for a name that is no OS family.
pub(crate) fn os_package_format(family: &str) -> Option<&'static str> {
    let family = family.trim().to_ascii_lowercase();
    Some(match family.as_str() {
        "debian" | "ubuntu" | "echo" | "debian gnu/linux" => "deb",
        "alpine" | "wolfi" | "chainguard" | "minimos" => "apk",
        "redhat"
        | "centos"
        | "centos-stream"
        | "rocky"
        | "alma"
        | "oracle"
        | "amazon"
        | "amazon linux"
        | "fedora"
        | "photon"
        | "cbl-mariner"
        | "azurelinux"
        | "coreos"
        | "opensuse"
        | "opensuse-leap"
        | "opensuse.leap"
        | "opensuse-tumbleweed"
        | "opensuse.tumbleweed"
        | "sles"
        | "slem"
        | "suse linux enterprise server"
        | "suse linux enterprise micro" => "rpm",
        // Known families whose package format caulk does not know: the
        // family stands for the ecosystem, so no updater claims the findings.
        "bottlerocket" => "bottlerocket",
        "cleanstart" => "cleanstart",
        _ => return None,
    })
}

/// The ecosystem of a library result's `Type` (`python-pkg`, `gomod`, `jar`,
/// ...); an unknown type is kept, lowercased, so the summary can name it.
pub(crate) fn library_ecosystem(result_type: &str) -> String {
    let lowered = result_type.trim().to_ascii_lowercase();
    let known = match lowered.as_str() {
        "python-pkg" | "pip" | "pipenv" | "poetry" | "uv" | "pylock" => "python",
        "conda-pkg" | "conda-environment" => "conda",
        "node-pkg" | "npm" | "yarn" | "pnpm" | "bun" => "npm",
        "gomod" | "gobinary" => "go",
        "jar" | "pom" | "gradle" | "sbt" => "maven",
        "bundler" | "gemspec" => "gem",
        "cargo" | "rustbinary" | "rust-binary" => "cargo",
        "composer" | "composer-vendor" => "composer",
        "nuget" | "dotnet-core" | "packages-props" => "nuget",
        "conan" => "conan",
        "cocoapods" => "cocoapods",
        "swift" => "swift",
        "pub" => "pub",
        "hex" => "hex",
        "julia" => "julia",
        "bitnami" => "bitnami",
        "kubernetes" | "eks" | "gke" | "aks" | "rke" | "ocp" => "kubernetes",
        _ => return lowered,
    };
    known.to_owned()
}

/// The ecosystem of a lock or manifest file, for legacy results that name
/// their file in `Target` but carry no `Type`.
pub(crate) fn ecosystem_of_file(target: &str) -> Option<&'static str> {
    let name = target.rsplit(['/', '\\']).next().unwrap_or(target);
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
    Some(match name {
        "Pipfile.lock" | "poetry.lock" | "requirements.txt" | "uv.lock" | "pyproject.toml"
        | "pylock.toml" => "python",
        "package-lock.json" | "yarn.lock" | "pnpm-lock.yaml" | "package.json" | "bun.lock" => "npm",
        "Gemfile.lock" => "gem",
        "Cargo.lock" => "cargo",
        "composer.lock" | "installed.json" => "composer",
        "go.sum" | "go.mod" => "go",
        "pom.xml" | "gradle.lockfile" | "build.sbt.lock" => "maven",
        "packages.lock.json" | "packages.config" | "Directory.Packages.props" => "nuget",
        "conan.lock" => "conan",
        "Podfile.lock" => "cocoapods",
        "Package.resolved" => "swift",
        "pubspec.lock" => "pub",
        "mix.lock" => "hex",
        _ if name.ends_with(".deps.json") => "nuget",
        _ => match extension.as_deref() {
            Some("jar" | "war" | "ear" | "par") => "maven",
            Some("gemspec") => "gem",
            _ => return None,
        },
    })
}

/// Trivy's labels for results that gather packages from many places
/// (`Python`, `Node.js`, ...): a label, not a location.
pub(crate) fn is_aggregate_target(target: &str) -> bool {
    matches!(target, "Python" | "Conda" | "Ruby" | "Node.js" | "Java" | "Kubernetes" | "Bitnami")
}

/// Family and version from the tail of an OS result's target:
/// `debian:10.8 (debian 10.8)` → (`debian`, `10.8`); the family may contain
/// spaces (`suse linux enterprise server 15.3`). Also returns the part
/// before the parenthesis, the scanned artifact.
pub(crate) fn os_from_target(target: &str) -> Option<(&str, &str, &str)> {
    let inner = target.trim_end().strip_suffix(')')?;
    let open = inner.rfind(" (").or_else(|| inner.starts_with('(').then_some(0))?;
    let artifact = inner[..open].trim();
    let inside = inner[open..].trim_start().strip_prefix('(')?.trim();
    let (family, version) = inside.rsplit_once(' ').unwrap_or((inside, ""));
    os_package_format(family)?;
    Some((artifact, family.trim(), version.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_targets() {
        assert_eq!(os_from_target("debian:10.8 (debian 10.8)"), Some(("debian:10.8", "debian", "10.8")));
        assert_eq!(
            os_from_target("img (suse linux enterprise server 15.3)"),
            Some(("img", "suse linux enterprise server", "15.3"))
        );
        assert_eq!(os_from_target("app/Pipfile.lock"), None);
        assert_eq!(os_from_target("odd (not-an-os 1)"), None);
    }

    #[test]
    fn files_and_types() {
        assert_eq!(ecosystem_of_file("app/Pipfile.lock"), Some("python"));
        assert_eq!(ecosystem_of_file("srv/App.deps.json"), Some("nuget"));
        assert_eq!(ecosystem_of_file("lib/x.JAR"), Some("maven"));
        assert_eq!(ecosystem_of_file("usr/bin/app"), None);
        assert_eq!(library_ecosystem("gobinary"), "go");
        assert_eq!(library_ecosystem("Something-New"), "something-new");
    }
}
