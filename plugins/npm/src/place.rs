//! Where a finding's package lives: in an app (a directory with
//! `package.json` and its `node_modules`) or among the global packages.
//!
//! Scanners name a lock file (`/app/package-lock.json`) or a package's own
//! `package.json` (`/app/node_modules/a/node_modules/b/package.json`); the
//! host has made both absolute. Names and locations are checked here before
//! they reach a file probe or an argv.

/// An app directory, or the global packages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    App(String),
    Global,
}

const MANIFESTS: &[&str] =
    &["package-lock.json", "npm-shrinkwrap.json", "package.json", "yarn.lock", "pnpm-lock.yaml"];

/// Whether `path` can be put into a file probe or a working directory as
/// it is: absolute, no `..` or `.` segment, no glob or control characters.
pub fn safe_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 4096
        && !path.split('/').any(|s| s == ".." || s == ".")
        && !path.chars().any(|c| c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\'))
}

/// Where `location` puts a package, given the image's global root (`npm
/// root -g`, e.g. `/usr/local/lib/node_modules`). None when the location is
/// missing or unusable.
pub fn place_of(location: Option<&str>, global_root: &str) -> Option<Place> {
    let location = location?.trim_end_matches('/');
    if !safe_path(location) {
        return None;
    }
    let dir = if let Some(at) = location
        .find("/node_modules/")
        .or_else(|| location.ends_with("/node_modules").then(|| location.len() - "/node_modules".len()))
    {
        &location[..at]
    } else if let Some((dir, file)) = location.rsplit_once('/')
        && MANIFESTS.contains(&file)
    {
        dir
    } else {
        location
    };
    if format!("{dir}/node_modules") == global_root.trim_end_matches('/') {
        return Some(Place::Global);
    }
    Some(Place::App(if dir.is_empty() { "/".to_owned() } else { dir.to_owned() }))
}

/// What npm accepts as a package name: `name` or `@scope/name`, at most
/// 214 bytes, URL-safe characters, not starting with `.` or `_` — so it can
/// neither be read as an option nor widen a path.
pub fn valid_name(name: &str) -> bool {
    let chars = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '_', '-'])
            && part.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    if name.len() > 214 {
        return false;
    }
    match name.strip_prefix('@') {
        Some(scoped) => scoped.split_once('/').is_some_and(|(scope, bare)| chars(scope) && chars(bare)),
        None => chars(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/usr/local/lib/node_modules";

    #[test]
    fn locations_name_their_app_or_the_globals() {
        let app = |d: &str| Some(Place::App(d.to_owned()));
        assert_eq!(place_of(Some("/app/package-lock.json"), ROOT), app("/app"));
        assert_eq!(place_of(Some("/app/node_modules/lodash/package.json"), ROOT), app("/app"));
        assert_eq!(
            place_of(Some("/srv/web/node_modules/a/node_modules/b/package.json"), ROOT),
            app("/srv/web")
        );
        assert_eq!(place_of(Some("/app"), ROOT), app("/app"));
        assert_eq!(place_of(Some("/package-lock.json"), ROOT), app("/"));
        assert_eq!(
            place_of(Some("/usr/local/lib/node_modules/semver/package.json"), ROOT),
            Some(Place::Global)
        );
        assert_eq!(place_of(Some("/app/../etc/package.json"), ROOT), None);
        assert_eq!(place_of(Some("/app/*/package.json"), ROOT), None);
        assert_eq!(place_of(Some("app/package.json"), ROOT), None, "the host makes locations absolute");
        assert_eq!(place_of(None, ROOT), None);
    }

    #[test]
    fn names_cannot_be_options_or_paths() {
        for good in ["lodash", "@xmldom/xmldom", "lodash.merge", "JSONStream"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "--global", "-x", "../x", "@x", "@/x", "a/b", "a b", ".x", "_x", "x@1"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
