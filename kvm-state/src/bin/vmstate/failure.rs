//! A failed command, reported as one line: `vmstate: <what failed>: <why>: <why>...`.

use std::error::Error;
use std::fmt;

use kvm_state::KvmStateError;
use snapshot::SnapshotError;

/// What failed, and the chain of causes, outermost first.
#[derive(Debug)]
pub(crate) struct Failure {
    what: String,
    causes: Vec<String>,
    /// The reader of our output went away (`vmstate dump | head`): exit without a word.
    pub(crate) broken_pipe: bool,
}

impl Failure {
    /// A failure with no cause beyond `what`.
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Failure {
            what: what.into(),
            causes: Vec::new(),
            broken_pipe: false,
        }
    }

    /// Adds one cause.
    pub(crate) fn cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    /// Adds `err` and every error below it.
    pub(crate) fn because(mut self, err: &(dyn Error + 'static)) -> Self {
        let mut next = Some(err);
        while let Some(err) = next {
            next = err.source();
            if let Some(KvmStateError::Snapshot { source, .. }) = err.downcast_ref() {
                // "cannot load snapshot": `what` already says so, with the path.
                next = Some(source);
                continue;
            }
            let message = match err.downcast_ref::<SnapshotError>() {
                // The path is in `what`; keep the step and the OS's own words below it.
                Some(SnapshotError::File { step, .. }) => (*step).to_owned(),
                Some(too_large @ SnapshotError::StateTooLarge { .. }) => {
                    format!("{too_large} (raise it with --max-state-size)")
                }
                _ => err.to_string(),
            };
            if self.causes.last() != Some(&message) {
                self.causes.push(message);
            }
        }
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        for cause in &self.causes {
            // One line, whatever a cause says.
            write!(f, ": {}", cause.replace('\n', " "))?;
        }
        Ok(())
    }
}

impl From<std::io::Error> for Failure {
    /// Only writing the output fails this way.
    fn from(err: std::io::Error) -> Self {
        let mut failure = Failure::new("cannot write the output").because(&err);
        failure.broken_pipe = err.kind() == std::io::ErrorKind::BrokenPipe;
        failure
    }
}
