//! Log lines from a plugin, routed by the host to its log with the plugin's
//! name. Natively (in a plugin's unit tests) they go to stderr.

use crate::bindings::common::caulk::plugin::host::{self, Level};

fn emit(level: Level, message: &str) {
    if cfg!(target_family = "wasm") {
        host::log(level, message);
    } else {
        eprintln!("[{level:?}] {message}");
    }
}

/// A line for tracing a plugin's inner workings.
pub fn trace(message: impl AsRef<str>) {
    emit(Level::Trace, message.as_ref());
}

/// A line useful when debugging.
pub fn debug(message: impl AsRef<str>) {
    emit(Level::Debug, message.as_ref());
}

/// A line a user may want to see.
pub fn info(message: impl AsRef<str>) {
    emit(Level::Info, message.as_ref());
}

/// Something looks wrong but the plugin goes on.
pub fn warn(message: impl AsRef<str>) {
    emit(Level::Warn, message.as_ref());
}

/// Something failed.
pub fn error(message: impl AsRef<str>) {
    emit(Level::Error, message.as_ref());
}
