//! BuildKit's wire messages, hand-written `prost` structs (no protoc, no
//! copied .proto files). Unknown fields a newer daemon sends are skipped by
//! prost, so a subset is enough to talk to any version.

pub mod control;
pub mod fsutil;
pub mod llb;
