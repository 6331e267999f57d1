//! A failed command, reported as one line: `<tool>: <what failed>: <why>: <why>...`.

use std::error::Error;
use std::fmt;

use snapshot::SnapshotError;
use versionize::VersionizeError;

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

    /// Adds `err` and every error below it, each cause once: a wrapper whose message
    /// already ends with its source's message contributes only what it adds, the path of a
    /// file error is left out when `what` names it, and an i/o error kind is left to the
    /// operating system's own words below it.
    pub(crate) fn because(mut self, err: &(dyn Error + 'static)) -> Self {
        let mut next = Some(err);
        while let Some(err) = next {
            next = err.source();
            let message = match (
                err.downcast_ref::<SnapshotError>(),
                // A context's source is a boxed error.
                err.downcast_ref::<VersionizeError>().or_else(|| {
                    err.downcast_ref::<Box<VersionizeError>>()
                        .map(|boxed| &**boxed)
                }),
            ) {
                // A state that ends inside a field: said so, instead of std's "failed to
                // fill whole buffer".
                (
                    _,
                    Some(VersionizeError::Io {
                        kind: std::io::ErrorKind::UnexpectedEof,
                        ..
                    }),
                ) => {
                    next = None;
                    "truncated: the state ends inside this field".to_owned()
                }
                // The kind only: the OS's words follow.
                (Some(SnapshotError::Io { .. }), _) | (_, Some(VersionizeError::Io { .. })) => {
                    continue
                }
                (Some(SnapshotError::File { step, path, .. }), _) => {
                    if self.what.contains(&path.display().to_string()) {
                        (*step).to_owned()
                    } else {
                        format!("{step} {}", path.display())
                    }
                }
                (Some(SnapshotError::NotRegularFile { step, path, found }), _) => {
                    if self.what.contains(&path.display().to_string()) {
                        format!("{found}, not a regular file")
                    } else {
                        format!("{step} {}: {found}, not a regular file", path.display())
                    }
                }
                (Some(too_large @ SnapshotError::StateTooLarge { .. }), _) => {
                    format!("{too_large} (raise it with --max-state-size)")
                }
                _ => without_source(err),
            };
            if !message.is_empty() && self.causes.last() != Some(&message) {
                self.causes.push(message);
            }
        }
        self
    }
}

/// The message of `err` less its source's message when it ends with it (`"{context}:
/// {source}"` displays): the source is reported on its own.
fn without_source(err: &(dyn Error + 'static)) -> String {
    let message = err.to_string();
    let Some(source) = err.source() else {
        return message;
    };
    let source = source.to_string();
    match message.strip_suffix(&source) {
        Some(own) => own.trim_end_matches([':', ' ']).to_owned(),
        None => message,
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
