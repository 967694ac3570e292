//! Grype's (syft's) package types in the ecosystem vocabulary of
//! `caulk:plugin/types` (`deb`, `apk`, `rpm`, `python`, `npm`, ...).

/// syft's package types and their ecosystems, where the names differ or
/// caulk knows the type.
const TYPES: &[(&str, &str)] = &[
    ("deb", "deb"),
    ("rpm", "rpm"),
    ("apk", "apk"),
    ("alpm", "alpm"),
    ("portage", "portage"),
    ("python", "python"),
    ("java-archive", "maven"),
    ("jenkins-plugin", "maven"),
    ("graalvm-native-image", "maven"),
    ("go-module", "go"),
    ("npm", "npm"),
    ("gem", "gem"),
    ("rust-crate", "cargo"),
    ("php-composer", "composer"),
    ("php-pecl", "pecl"),
    ("php-pear", "pecl"),
    ("dotnet", "nuget"),
    ("conan", "conan"),
    ("hex", "hex"),
    ("dart-pub", "pub"),
    ("pod", "cocoapods"),
    ("swift", "swift"),
    ("swiplpack", "swipl"),
    ("binary", "binary"),
    ("r-package", "cran"),
    ("lua-rocks", "luarocks"),
    ("erlang-otp", "otp"),
    ("github-action", "github-actions"),
    ("github-action-workflow", "github-actions"),
    ("wordpress-plugin", "wordpress"),
];

/// The ecosystem of an artifact `type`; an unknown type is kept, lowercased,
/// so the summary can name it. (Runs once per finding: no lowercase copy
/// unless the type is unknown.)
pub(crate) fn ecosystem(artifact_type: &str) -> String {
    let artifact_type = artifact_type.trim();
    TYPES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(artifact_type))
        .map_or_else(|| artifact_type.to_ascii_lowercase(), |(_, ecosystem)| (*ecosystem).to_owned())
}

/// Packages installed by the distribution's package manager.
pub(crate) fn is_os_package(ecosystem: &str) -> bool {
    matches!(ecosystem, "deb" | "rpm" | "apk" | "alpm" | "portage")
}

/// The ecosystem of a purl's type, for artifacts without a `type`.
pub(crate) fn ecosystem_of_purl(purl: &str) -> Option<&'static str> {
    let kind = purl.strip_prefix("pkg:")?.split('/').next()?;
    Some(match kind {
        "deb" => "deb",
        "rpm" => "rpm",
        "apk" => "apk",
        "alpm" => "alpm",
        "pypi" => "python",
        "maven" => "maven",
        "golang" => "go",
        "npm" => "npm",
        "gem" => "gem",
        "cargo" => "cargo",
        "composer" => "composer",
        "nuget" => "nuget",
        "conan" => "conan",
        "hex" => "hex",
        "pub" => "pub",
        "cocoapods" => "cocoapods",
        "swift" => "swift",
        "generic" => "binary",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_purls() {
        assert_eq!(ecosystem("java-archive"), "maven");
        assert_eq!(ecosystem("R-package"), "cran");
        assert_eq!(ecosystem("Something-New"), "something-new");
        assert!(is_os_package("rpm") && !is_os_package("binary"));
        assert_eq!(ecosystem_of_purl("pkg:pypi/flask@1.1.2"), Some("python"));
        assert_eq!(ecosystem_of_purl("pkg:golang/github.com/x/y@v1"), Some("go"));
        assert_eq!(ecosystem_of_purl("not a purl"), None);
    }
}
