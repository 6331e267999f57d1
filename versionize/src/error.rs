//! The one error type of the crate.

use std::fmt;
use std::io;

/// Result alias used by every [`Versionize`](crate::Versionize) method.
pub type VersionizeResult<T> = Result<T, VersionizeError>;

/// Where in a value an error happened: a type, optionally a field or variant, and the type
/// version that was being written or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// Name of the type being encoded or decoded.
    pub type_name: &'static str,
    /// Field (or enum variant) being encoded or decoded, when known.
    pub field: Option<&'static str>,
    /// Version of `type_name` being used.
    pub version: u16,
}

impl fmt::Display for ErrorFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{}.{} (v{})", self.type_name, field, self.version),
            None => write!(f, "{} (v{})", self.type_name, self.version),
        }
    }
}

/// The path of an error through nested types, outermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorPath(pub Vec<ErrorFrame>);

impl fmt::Display for ErrorPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, frame) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{frame}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong while encoding or decoding versioned state.
///
/// Errors raised inside a derived type are wrapped in [`VersionizeError::Context`], which
/// says which type and field failed at which version; [`VersionizeError::root`] returns the
/// underlying cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionizeError {
    /// The underlying reader or writer failed.
    #[error("i/o error: {kind}")]
    Io {
        /// The kind of the i/o error, kept so callers can match on it.
        kind: io::ErrorKind,
        /// The original error.
        #[source]
        source: io::Error,
    },
    /// A `String` or `char` held bytes that are not valid UTF-8.
    #[error("invalid utf-8 in {what}")]
    InvalidUtf8 {
        /// `"String"` or `"char"`.
        what: &'static str,
    },
    /// A `bool` byte was neither 0 nor 1.
    #[error("invalid bool byte {0:#04x}, expected 0 or 1")]
    InvalidBool(u8),
    /// An `Option` tag byte was neither 0 nor 1.
    #[error("invalid option tag {0:#04x}, expected 0 or 1")]
    InvalidOptionTag(u8),
    /// An enum variant index that does not exist at the version being read.
    #[error("unknown variant index {index} for {type_name} at version {version}")]
    UnknownVariant {
        /// The enum.
        type_name: &'static str,
        /// The index found in the input.
        index: u32,
        /// The enum's type version being read.
        version: u16,
    },
    /// Substituting a variant absent at the target version went around in a cycle.
    #[error("variant substitution cycle in {type_name} at version {version} (started at variant {variant})")]
    VariantCycle {
        /// The enum.
        type_name: &'static str,
        /// The variant that started the substitution chain.
        variant: &'static str,
        /// The enum's type version being written.
        version: u16,
    },
    /// A variant does not exist at the target version and offers no substitute.
    #[error("variant {variant} of {type_name} does not exist at version {version}")]
    VariantNotAtVersion {
        /// The enum.
        type_name: &'static str,
        /// The variant that cannot be written.
        variant: &'static str,
        /// The enum's type version being written.
        version: u16,
    },
    /// An application (data) version outside `1..=latest_version()`.
    #[error("app version {app_version} is not in this version map (expected 1..={latest})")]
    InvalidAppVersion {
        /// The version asked for.
        app_version: u16,
        /// The newest app version of the map.
        latest: u16,
    },
    /// An app version inside the map but older than the oldest this build still reads and
    /// writes ([`VersionMap::set_oldest_supported`](crate::VersionMap::set_oldest_supported)).
    #[error("app version {app_version} is older than the oldest this build supports ({oldest}..={latest})")]
    AppVersionUnsupported {
        /// The app version of the data, or asked for.
        app_version: u16,
        /// The oldest app version this build supports.
        oldest: u16,
        /// The newest app version of the map.
        latest: u16,
    },
    /// The version map maps a type to a version the type does not have.
    #[error("{type_name} is mapped to version {mapped} but its latest version is {latest}")]
    InvalidTypeVersion {
        /// The type.
        type_name: &'static str,
        /// The version the map gave.
        mapped: u16,
        /// The type's own latest version.
        latest: u16,
    },
    /// A length prefix is above the configured cap for its kind.
    #[error("{what} length {found} exceeds the limit of {limit}")]
    LengthLimit {
        /// `"String"` or `"collection"`.
        what: &'static str,
        /// The length read from the input.
        found: u64,
        /// The configured cap.
        limit: u64,
    },
    /// Decoding would allocate more than the remaining budget of this top-level decode.
    #[error("decode budget exceeded: {requested} bytes requested, {remaining} of {budget} left")]
    BudgetExceeded {
        /// Bytes the current value would need.
        requested: u64,
        /// Bytes left in the budget.
        remaining: u64,
        /// The whole budget of this decode.
        budget: u64,
    },
    /// Nesting of derived types is deeper than the configured limit.
    #[error("nesting deeper than the limit of {limit}")]
    DepthLimit {
        /// The configured maximum depth.
        limit: u32,
    },
    /// Nesting would take more stack than the configured limit: the value's types hold
    /// large values on the stack at each level, or the value is nested too deep.
    #[error("nesting needs {needed} bytes of stack, above the limit of {limit}")]
    StackLimit {
        /// Stack bytes the nesting reached when it was refused.
        needed: u64,
        /// The configured limit ([`Limits::max_stack`](crate::Limits::max_stack)).
        limit: u64,
    },
    /// Bytes were left over after a value decoded from a slice.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// Bytes not consumed.
        count: u64,
    },
    /// A flexible-array struct's header disagrees with its entry count.
    #[error("flexible array header says {header} entries but {entries} follow")]
    FamLength {
        /// Length in the header.
        header: u64,
        /// Entries actually present.
        entries: u64,
    },
    /// A value could not be converted (for example a `u64` length that does not fit `usize`).
    #[error("value out of range: {0}")]
    OutOfRange(&'static str),
    /// An error returned by a user hook (`ser_fn`, `de_fn`, `default_fn`).
    #[error("{0}")]
    Semantic(String),
    /// An error with the type, field and version where it happened.
    #[error("{path}: {source}")]
    Context {
        /// Where the error happened, outermost first.
        path: ErrorPath,
        /// The underlying error.
        #[source]
        source: Box<VersionizeError>,
    },
}

impl VersionizeError {
    /// The underlying error, without the [`Context`](VersionizeError::Context) wrapping.
    #[must_use]
    pub fn root(&self) -> &VersionizeError {
        match self {
            VersionizeError::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// The path (type, field, version) where the error happened, outermost first; empty when
    /// the error was raised outside any derived type.
    #[must_use]
    pub fn path(&self) -> &[ErrorFrame] {
        match self {
            VersionizeError::Context { path, .. } => &path.0,
            _ => &[],
        }
    }

    /// The kind of the underlying i/o error, if the root cause is one.
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self.root() {
            VersionizeError::Io { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Adds a frame saying the error happened in `field` of `type_name` at `version`.
    ///
    /// Frames are kept outermost first, so each enclosing type prepends its own.
    #[cold]
    #[must_use]
    pub fn in_field(
        self,
        type_name: &'static str,
        field: Option<&'static str>,
        version: u16,
    ) -> Self {
        let frame = ErrorFrame {
            type_name,
            field,
            version,
        };
        match self {
            VersionizeError::Context { mut path, source } => {
                path.0.insert(0, frame);
                VersionizeError::Context { path, source }
            }
            other => VersionizeError::Context {
                path: ErrorPath(vec![frame]),
                source: Box::new(other),
            },
        }
    }
}

impl From<io::Error> for VersionizeError {
    fn from(source: io::Error) -> Self {
        VersionizeError::Io {
            kind: source.kind(),
            source,
        }
    }
}
