//! Package-index look-ups the host answers for updaters (plugins do no I/O):
//! which versions an index publishes, with their `Requires-Python`.

use crate::model::{Answer, IndexQuery};

/// Answers one look-up.
pub fn lookup(query: &IndexQuery) -> Answer {
    Answer::Unavailable(format!(
        "caulk cannot look up {} packages yet (asked for {})",
        query.ecosystem, query.name
    ))
}
