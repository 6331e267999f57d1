//! The error of a command `vmstate` adds to `vmstate_cli::Cli`: what failed and why (its
//! source), which the tool prints as one line, each cause once.

use std::error::Error;
use std::fmt;

/// A boxed error, as `Cli::command` handlers return.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// What failed, and why.
#[derive(Debug)]
pub(crate) struct Failure {
    what: String,
    source: Option<BoxError>,
}

impl Failure {
    /// A failure with no cause beyond `what`.
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Failure {
            what: what.into(),
            source: None,
        }
    }

    /// The cause.
    pub(crate) fn because(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::new("cannot write the report").because(error)
    }
}
