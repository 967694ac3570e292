//! What can stop the npm updater's plan as a whole.

use caulk_sdk::types::{Error, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum NpmError {
    #[error("the image has no working npm: `npm root -g` {detail}")]
    NoNpm { detail: String },

    #[error("{name}: no fixed version can be installed: {reasons}")]
    NothingInstallable { name: String, reasons: String },

    #[error("npm has no setting {key:?} (from --plugin-opt npm.{key}=...)")]
    UnknownSetting { key: String },

    #[error("--plugin-opt npm.{key}={value}: {problem}")]
    BadSetting { key: String, value: String, problem: &'static str },
}

impl From<NpmError> for Error {
    fn from(e: NpmError) -> Self {
        let (kind, hint) = match &e {
            NpmError::NoNpm { .. } => (
                ErrorKind::NotApplicable,
                "install npm in the image, or leave npm findings out with --pkg-types os",
            ),
            NpmError::NothingInstallable { .. } => (
                ErrorKind::NotApplicable,
                "pass --ignore-errors to patch the other packages and report this one",
            ),
            NpmError::UnknownSetting { .. } => {
                (ErrorKind::Unsupported, "the npm updater's one setting is npm.scripts=true|false")
            }
            NpmError::BadSetting { .. } => (ErrorKind::MalformedInput, "npm.scripts takes true or false"),
        };
        Error { kind, message: e.to_string(), hint: Some(hint.to_owned()) }
    }
}
