//! What can stop the npm updater's plan as a whole.

use caulk_sdk::types::{Error, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum NpmError {
    #[error("the image has no working npm: `npm root -g` {detail}")]
    NoNpm { detail: String },

    #[error("{name}: no fixed version can be installed: {reasons}")]
    NothingInstallable { name: String, reasons: String },
}

impl From<NpmError> for Error {
    fn from(e: NpmError) -> Self {
        let hint = match &e {
            NpmError::NoNpm { .. } => {
                Some("install npm in the image, or leave npm findings out with --pkg-types os")
            }
            NpmError::NothingInstallable { .. } => {
                Some("pass --ignore-errors to patch the other packages and report this one")
            }
        };
        Error { kind: ErrorKind::NotApplicable, message: e.to_string(), hint: hint.map(str::to_owned) }
    }
}
