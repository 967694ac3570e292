//! The npm updater's settings (`--plugin-opt npm.KEY=VALUE`). They are
//! checked before anything is asked or planned: an unknown key or a bad
//! value is an error naming the option, never silently ignored.

use caulk_sdk::update::Options;

use crate::error::NpmError;

/// What `--plugin-opt npm.*` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// `npm.scripts=true`: let the installs run lifecycle scripts
    /// (`preinstall`, `install`, `postinstall`, `prepare`) of the packages
    /// they add and of the app itself. Off by default: the image's
    /// `package.json` files are untrusted input, and a script runs whatever
    /// it names inside the step's sandbox, with its output landing in the
    /// new layer.
    pub scripts: bool,
}

pub fn settings(options: &Options) -> Result<Settings, NpmError> {
    let mut settings = Settings::default();
    for (key, value) in &options.settings {
        match key.as_str() {
            "scripts" => {
                settings.scripts = caulk_sdk::flag(value).ok_or_else(|| NpmError::BadSetting {
                    key: key.clone(),
                    value: value.clone(),
                    problem: "expected true or false (or 1/0, yes/no)",
                })?;
            }
            _ => return Err(NpmError::UnknownSetting { key: key.clone() }),
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Options {
        let settings = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Options { settings, ..Options::default() }
    }

    #[test]
    fn scripts_are_off_unless_asked_for() {
        assert!(!settings(&Options::default()).unwrap().scripts);
        assert!(settings(&with(&[("scripts", "true")])).unwrap().scripts);
        assert!(!settings(&with(&[("scripts", "true"), ("scripts", "no")])).unwrap().scripts);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_option() {
        let err = caulk_sdk::types::Error::from(settings(&with(&[("script", "true")])).unwrap_err());
        assert!(err.message.contains("--plugin-opt npm.script="), "{}", err.message);
        assert!(err.hint.unwrap().contains("npm.scripts"));
        let err = caulk_sdk::types::Error::from(settings(&with(&[("scripts", "sometimes")])).unwrap_err());
        assert!(err.message.contains("--plugin-opt npm.scripts=sometimes"), "{}", err.message);
        assert!(err.message.contains("true or false"), "{}", err.message);
    }
}
