//! Cancellation shared between the caller (Ctrl-C, `--timeout`) and a
//! running session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag the caller sets to stop a session: checked between steps, and
/// while a step or probe runs (which is then killed).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for code that cannot depend on this crate (the
    /// layer writer) but must stop when it is set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}
