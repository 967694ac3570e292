//! Grype's (syft's) package types in the ecosystem vocabulary of
//! `caulk:plugin/types` (`deb`, `apk`, `rpm`, `python`, `npm`, ...).

/// The ecosystem of an artifact `type`; an unknown type is kept, lowercased,
/// so the summary can name it.
pub(crate) fn ecosystem(artifact_type: &str) -> String {
    let lowered = artifact_type.trim().to_ascii_lowercase();
    let known = match lowered.as_str() {
        "deb" => "deb",
        "rpm" => "rpm",
        "apk" => "apk",
        "alpm" => "alpm",
        "portage" => "portage",
        "python" => "python",
        "java-archive" | "jenkins-plugin" | "graalvm-native-image" => "maven",
        "go-module" => "go",
        "npm" => "npm",
        "gem" => "gem",
        "rust-crate" => "cargo",
        "php-composer" => "composer",
        "php-pecl" | "php-pear" => "pecl",
        "dotnet" => "nuget",
        "conan" => "conan",
        "hex" => "hex",
        "dart-pub" => "pub",
        "pod" => "cocoapods",
        "swift" => "swift",
        "swiplpack" => "swipl",
        "binary" => "binary",
        "r-package" => "cran",
        "lua-rocks" => "luarocks",
        "erlang-otp" => "otp",
        "github-action" | "github-action-workflow" => "github-actions",
        "wordpress-plugin" => "wordpress",
        _ => return lowered,
    };
    known.to_owned()
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
