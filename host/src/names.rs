//! The lowercase names caulk's documents use for the model's enums (the
//! generated types serialise as their Rust variant names).

use serde::Serializer;

use crate::model::{FixStatus, PackageClass, Severity};

pub fn status_name(status: FixStatus) -> &'static str {
    match status {
        FixStatus::Fixed => "fixed",
        FixStatus::Affected => "affected",
        FixStatus::WillNotFix => "will-not-fix",
        FixStatus::FixDeferred => "fix-deferred",
        FixStatus::EndOfLife => "end-of-life",
        FixStatus::NotAffected => "not-affected",
        FixStatus::UnderInvestigation => "under-investigation",
        FixStatus::Unknown => "unknown",
    }
}

pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Unknown => "unknown",
        Severity::Negligible => "negligible",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

pub fn class_name(class: PackageClass) -> &'static str {
    match class {
        PackageClass::Os => "os",
        PackageClass::Library => "library",
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's serialize_with signature
pub fn serialize_severity<S: Serializer>(severity: &Severity, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(severity_name(*severity))
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's serialize_with signature
pub fn serialize_class<S: Serializer>(class: &PackageClass, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(class_name(*class))
}
