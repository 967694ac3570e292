//! The errors caulk shows users, each with the hint that helps.

use std::path::PathBuf;

use crate::plugin::PluginError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Plugin(#[from] PluginError),

    // Boxed: scan errors are large and rare; every other result stays small.
    #[error(transparent)]
    Scan(Box<crate::scan::ScanError>),

    #[error("{message}")]
    NoSuchPlugin { message: String, install_dir: Option<PathBuf> },

    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("{what} is not valid JSON for {call}: {source}")]
    RequestJson { what: String, call: &'static str, source: serde_json::Error },

    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),

    #[error("{0}")]
    Usage(String),

    #[error("{}", about_image(image, source))]
    Image { image: String, source: Box<caulk_image::Error> },

    #[error(transparent)]
    Patch(Box<crate::patch::PatchError>),

    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),

    #[error(transparent)]
    Grants(#[from] crate::plugin::grants::GrantStoreError),

    #[error(transparent)]
    Scaffold(#[from] crate::scaffold::ScaffoldError),
}

/// `image REF: MESSAGE`, or just the message when it names the image
/// already (most image errors start with where they happened).
pub(crate) fn about_image(image: &str, source: &caulk_image::Error) -> String {
    let message = source.to_string();
    if message.contains(image) { message } else { format!("image {image}: {message}") }
}

impl From<crate::scan::ScanError> for Error {
    fn from(e: crate::scan::ScanError) -> Self {
        Self::Scan(Box::new(e))
    }
}

impl From<crate::patch::PatchError> for Error {
    fn from(e: crate::patch::PatchError) -> Self {
        match e {
            crate::patch::PatchError::Usage(message) => Self::Usage(message),
            other => Self::Patch(Box::new(other)),
        }
    }
}

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Plugin(e) => e.hint(),
            Self::Scan(e) => e.hint(),
            Self::Patch(e) => e.hint(),
            Self::Grants(e) => e.hint(),
            Self::Scaffold(e) => e.hint(),
            Self::NoSuchPlugin { install_dir, .. } => Some(match install_dir {
                Some(dir) => format!(
                    "`caulk plugins list` shows the plugins caulk found; to install one, copy its .wasm file into {}",
                    dir.display()
                ),
                None => "`caulk plugins list` shows the plugins caulk found".into(),
            }),
            _ => None,
        }
    }

    /// 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Scaffold(e) if e.is_usage() => 2,
            _ => 1,
        }
    }
}
