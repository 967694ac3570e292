//! caulk: patch vulnerable packages inside container images without
//! rebuilding them.
//!
//! The binary is a thin shell over these modules: `cli` parses arguments and
//! renders errors, `plugin` runs WebAssembly plugins, `model` holds the
//! records that flow between them.

pub mod cli;
pub mod error;
pub mod fleet;
pub mod generate;
pub mod index;
pub mod model;
pub mod names;
pub mod parallel;
pub mod patch;
pub mod plugin;
pub mod report;
pub mod scaffold;
pub mod scan;
pub mod table;
pub mod updates;
pub mod vex;

pub use error::Error;
