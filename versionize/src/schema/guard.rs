//! The guard workflow: committed schema files, one per app version, checked against the
//! current build; the newest app version checked for types left at an old version; the
//! file of a new app version written on request, never one that exists.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{export, Difference, Renames, Schema, SchemaBuilder};
use crate::{VersionMap, Versionize, VersionizeError};

/// Why committed schema files, the version map and the current build disagree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaCheckError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a schema export of this format, or not of the app version its name
    /// says.
    #[error("{}: not a schema export: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A released app version is missing from the version map.
    #[error("{}: app version {app_version} was released but the version map stops at {latest}", path.display())]
    MissingAppVersion {
        /// The file of that app version.
        path: PathBuf,
        /// Its app version.
        app_version: u16,
        /// The map's latest app version.
        latest: u16,
    },
    /// The file of an app version below a committed one is missing: that app version was
    /// released, so its file must be restored, not written again.
    #[error(
        "{}: missing, but app version {released} has a committed file: restore it from version control (a released app version's file is never written again)",
        path.display()
    )]
    MissingFile {
        /// The missing file.
        path: PathBuf,
        /// Its app version.
        app_version: u16,
        /// The newest app version with a file.
        released: u16,
    },
    /// App versions of the map above the newest committed file have no file yet.
    #[error(
        "{}: no schema file for app version(s) {} of the version map: once their state is final, run the guard with {}=1 and commit the new file(s)",
        dir.display(),
        list(app_versions),
        SchemaGuard::BLESS_VAR
    )]
    Unblessed {
        /// The schema directory.
        dir: PathBuf,
        /// The app versions without a file.
        app_versions: Vec<u16>,
    },
    /// The current build no longer reads or writes released app versions as their files
    /// say.
    #[error("{}", format_mismatch(dir, findings))]
    Mismatch {
        /// The schema directory.
        dir: PathBuf,
        /// Each difference once, with the files it was found in.
        findings: Vec<Finding>,
    },
    /// The newest app version maps reachable types to a version other than their newest,
    /// so the newest build would write (and restore) their old layout.
    #[error("{}", format_behind(*app_version, types))]
    NotLatest {
        /// The newest app version of the map.
        app_version: u16,
        /// The types, by full name.
        types: Vec<BehindType>,
    },
    /// Export failed.
    #[error(transparent)]
    Versionize(#[from] VersionizeError),
}

/// A type that the newest app version does not map to its newest version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehindType {
    /// The type's full name.
    pub name: String,
    /// The version the newest app version maps it to.
    pub mapped: u16,
    /// Its newest version.
    pub latest: u16,
}

/// A difference, found in one or more schema files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What differs.
    pub difference: Difference,
    /// The app versions whose files show it, in order.
    pub app_versions: Vec<u16>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self
            .app_versions
            .iter()
            .map(|app_version| file_name(*app_version))
            .collect();
        if self.difference.path.is_empty() {
            write!(f, "{}", self.difference.message)?;
        } else {
            write!(f, "{}", self.difference)?;
        }
        write!(f, " (in {})", files.join(", "))
    }
}

fn list(app_versions: &[u16]) -> String {
    let text: Vec<String> = app_versions.iter().map(ToString::to_string).collect();
    text.join(", ")
}

fn format_mismatch(dir: &Path, findings: &[Finding]) -> String {
    let mut text = format!(
        "{}: the current build no longer reads released app versions as their schema files say \
         (a released file is never edited: version the change instead):",
        dir.display()
    );
    for finding in findings {
        text.push_str(&format!("\n  - {finding}"));
    }
    text
}

fn format_behind(app_version: u16, types: &[BehindType]) -> String {
    let mut text = format!(
        "app version {app_version}, the newest of the version map, does not map every type to \
         its newest version, so this build would write and restore an old layout (map each in a \
         new app version with `set_type_version`, or opt out with `SchemaGuard::allow_behind`):"
    );
    for ty in types {
        if ty.mapped > ty.latest {
            text.push_str(&format!(
                "\n  - {}: mapped to v{}, which it does not have (newest v{})",
                ty.name, ty.mapped, ty.latest
            ));
        } else {
            text.push_str(&format!(
                "\n  - {}: at v{}, newest v{}",
                ty.name, ty.mapped, ty.latest
            ));
        }
    }
    text
}

fn file_name(app_version: u16) -> String {
    format!("v{app_version}.json")
}

/// Checks that the newest app version of `map` maps every type reachable from `T` to its
/// newest `version()`: otherwise a field added with `start = N` but never mapped is
/// silently not written, even by the build that added it. One call at a VMM's start-up or
/// in a test; [`SchemaGuard`] runs it too, with opt-outs.
///
/// # Errors
/// [`SchemaCheckError::NotLatest`] naming each type, its mapped and its newest version.
///
/// # Example
/// ```
/// use versionize::schema::{check_latest, SchemaCheckError};
/// use versionize::prelude::*;
///
/// #[derive(Versionize)]
/// struct Rtc {
///     seconds: u32,
///     #[version(start = 2)]
///     alarm: u32,
/// }
///
/// let mut map = VersionMap::new();
/// map.new_version(); // forgot `.set_type_version(Rtc::type_id(), 2)`
/// let error = check_latest::<Rtc>(&map).unwrap_err();
/// assert!(matches!(error, SchemaCheckError::NotLatest { app_version: 2, .. }));
/// assert!(error.to_string().contains("rust_out::Rtc: at v1, newest v2"));
///
/// map.set_type_version(Rtc::type_id(), 2);
/// check_latest::<Rtc>(&map).unwrap();
/// ```
pub fn check_latest<T: Versionize + 'static>(map: &VersionMap) -> Result<(), SchemaCheckError> {
    not_latest::<T>(map, &BTreeSet::new())
}

fn not_latest<T: Versionize + 'static>(
    map: &VersionMap,
    allowed: &BTreeSet<String>,
) -> Result<(), SchemaCheckError> {
    let app_version = map.latest_version();
    let schema = export::<T>(map, app_version)?;
    let types: Vec<BehindType> = schema
        .types
        .values()
        .filter(|ty| ty.version != ty.latest_version && !allowed.contains(&ty.name))
        .map(|ty| BehindType {
            name: ty.name.clone(),
            mapped: ty.version,
            latest: ty.latest_version,
        })
        .collect();
    if types.is_empty() {
        Ok(())
    } else {
        Err(SchemaCheckError::NotLatest { app_version, types })
    }
}

type DescribeFn = fn(&mut SchemaBuilder<'_>) -> String;

/// The guard test of a VMM's state: committed schema files in one directory, one per app
/// version (`v1.json`, `v2.json`, ...), checked against the current build.
///
/// [`check`](Self::check) fails when
/// - the current build would read or write a committed app version differently: a field
///   added, removed, retyped or reordered without a version change, a variant removed or
///   renumbered, a type version lowered, an app version mapped to another type version
///   (each difference listed once, with the files that show it);
/// - the newest app version leaves a reachable type below its newest version
///   ([`check_latest`]), unless allowed with [`allow_behind`](Self::allow_behind);
/// - an app version of the map has no file, or a file names an app version the map lacks.
///
/// [`bless`](Self::bless) writes the files of the app versions above the newest committed
/// one, and only when everything else checks clean; it never writes a file that exists.
/// [`run`](Self::run) is the one call of a guard test: `check`, or `bless` when the
/// environment variable [`VERSIONIZE_BLESS`](Self::BLESS_VAR) is `1`.
///
/// # Example
/// ```
/// use versionize::schema::{SchemaCheckError, SchemaGuard};
/// use versionize::prelude::*;
///
/// #[derive(Versionize)]
/// struct Pit {
///     count: u32,
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("schema-guard-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let map = VersionMap::new();
/// let guard = SchemaGuard::new(&map, &dir);
/// // Nothing released yet: the check says how to bless.
/// assert!(matches!(guard.check::<Pit>(), Err(SchemaCheckError::Unblessed { .. })));
/// // At release (what `VERSIONIZE_BLESS=1` does in `run`): write v1.json, commit it.
/// assert_eq!(guard.bless::<Pit>()?, [dir.join("v1.json")]);
/// // Every later build's guard test:
/// guard.run::<Pit>()?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SchemaGuard<'a> {
    map: &'a VersionMap,
    dir: PathBuf,
    renames: Renames,
    allowed_behind: Vec<DescribeFn>,
}

impl<'a> SchemaGuard<'a> {
    /// The environment variable that makes [`run`](Self::run) bless: `VERSIONIZE_BLESS=1`.
    pub const BLESS_VAR: &'static str = "VERSIONIZE_BLESS";

    /// A guard of the app versions of `map` with their schema files in `dir`.
    #[must_use]
    pub fn new(map: &'a VersionMap, dir: impl Into<PathBuf>) -> Self {
        SchemaGuard {
            map,
            dir: dir.into(),
            renames: Renames::new(),
            allowed_behind: Vec::new(),
        }
    }

    /// Declares that the type at full path `old` in the committed files is now `new`
    /// (renamed or moved); see [`Renames::rename_type`].
    #[must_use]
    pub fn rename_type(mut self, old: &str, new: &str) -> Self {
        self.renames.rename_type(old, new);
        self
    }

    /// Declares that every type under the module path `old` is now under `new`; see
    /// [`Renames::rename_module`].
    #[must_use]
    pub fn rename_module(mut self, old: &str, new: &str) -> Self {
        self.renames.rename_module(old, new);
        self
    }

    /// Declares that field `old` of `ty` (new full name, or `Type::Variant`) is now `new`;
    /// see [`Renames::rename_field`].
    #[must_use]
    pub fn rename_field(mut self, ty: &str, old: &str, new: &str) -> Self {
        self.renames.rename_field(ty, old, new);
        self
    }

    /// Declares that variant `old` of `ty` (new full name) is now `new`; see
    /// [`Renames::rename_variant`].
    #[must_use]
    pub fn rename_variant(mut self, ty: &str, old: &str, new: &str) -> Self {
        self.renames.rename_variant(ty, old, new);
        self
    }

    /// Opts `T` out of the newest-version check: the newest app version may map it below
    /// its newest version, on purpose (a type version that readers must know before any
    /// build writes it, so that a rollback by one release still reads the newest files).
    /// Every committed file is still checked.
    #[must_use]
    pub fn allow_behind<T: Versionize>(mut self) -> Self {
        self.allowed_behind.push(T::describe);
        self
    }

    /// Checks the committed files, the newest app version and that every app version of
    /// the map has a file. Reads only.
    ///
    /// # Errors
    /// See [`SchemaCheckError`]: the first of a mismatch with committed files, a missing
    /// or extra file, a type behind at the newest app version, app versions not blessed.
    pub fn check<T: Versionize + 'static>(&self) -> Result<(), SchemaCheckError> {
        let unblessed = self.check_committed::<T>()?;
        if unblessed.is_empty() {
            Ok(())
        } else {
            Err(SchemaCheckError::Unblessed {
                dir: self.dir.clone(),
                app_versions: unblessed,
            })
        }
    }

    /// Like [`check`](Self::check), but writes the files of the app versions above the
    /// newest committed one instead of failing for them. Never writes a file that exists,
    /// and writes nothing unless everything else checks clean. Returns the files written.
    ///
    /// # Errors
    /// As [`check`](Self::check), and I/O errors.
    pub fn bless<T: Versionize + 'static>(&self) -> Result<Vec<PathBuf>, SchemaCheckError> {
        let unblessed = self.check_committed::<T>()?;
        if unblessed.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| SchemaCheckError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut written = Vec::new();
        for app_version in unblessed {
            let path = self.dir.join(file_name(app_version));
            let json = export::<T>(self.map, app_version)?.to_json();
            write_new(&path, &json)?;
            written.push(path);
        }
        Ok(written)
    }

    /// The guard test in one call: [`bless`](Self::bless) when the environment variable
    /// `VERSIONIZE_BLESS` is `1`, else [`check`](Self::check). Returns the files written.
    ///
    /// # Errors
    /// As [`check`](Self::check) or [`bless`](Self::bless).
    pub fn run<T: Versionize + 'static>(&self) -> Result<Vec<PathBuf>, SchemaCheckError> {
        if std::env::var_os(Self::BLESS_VAR).is_some_and(|value| value == "1") {
            self.bless::<T>()
        } else {
            self.check::<T>().map(|()| Vec::new())
        }
    }

    /// Checks everything but the app versions above the newest file, which it returns.
    fn check_committed<T: Versionize + 'static>(&self) -> Result<Vec<u16>, SchemaCheckError> {
        let files = self.committed()?;
        let latest = self.map.latest_version();
        let newest_file = files.last().map_or(0, |(app_version, _)| *app_version);
        for app_version in 1..newest_file {
            if files
                .binary_search_by_key(&app_version, |(n, _)| *n)
                .is_err()
            {
                return Err(SchemaCheckError::MissingFile {
                    path: self.dir.join(file_name(app_version)),
                    app_version,
                    released: newest_file,
                });
            }
        }
        let mut findings: Vec<Finding> = Vec::new();
        for (app_version, path) in &files {
            let old = self.read(*app_version, path)?;
            let new = export::<T>(self.map, *app_version)?;
            for difference in super::compare(&self.renames.apply(&old), &new) {
                match findings.iter_mut().find(|f| f.difference == difference) {
                    Some(finding) => finding.app_versions.push(*app_version),
                    None => findings.push(Finding {
                        difference,
                        app_versions: vec![*app_version],
                    }),
                }
            }
        }
        if !findings.is_empty() {
            return Err(SchemaCheckError::Mismatch {
                dir: self.dir.clone(),
                findings,
            });
        }
        let mut allowed = BTreeSet::new();
        for describe in &self.allowed_behind {
            let mut builder = SchemaBuilder::new(self.map, latest)?;
            allowed.insert(describe(&mut builder));
        }
        not_latest::<T>(self.map, &allowed)?;
        Ok((newest_file + 1..=latest).collect())
    }

    /// The committed files, by app version; none when the directory does not exist.
    fn committed(&self) -> Result<Vec<(u16, PathBuf)>, SchemaCheckError> {
        let io = |source| SchemaCheckError::Io {
            path: self.dir.clone(),
            source,
        };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io(error)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(number) = name.strip_prefix('v').and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Ok(app_version) = number.parse::<u16>() else {
                continue;
            };
            if app_version == 0 || app_version > self.map.latest_version() {
                return Err(SchemaCheckError::MissingAppVersion {
                    path: entry.path(),
                    app_version,
                    latest: self.map.latest_version(),
                });
            }
            files.push((app_version, entry.path()));
        }
        files.sort();
        Ok(files)
    }

    fn read(&self, app_version: u16, path: &Path) -> Result<Schema, SchemaCheckError> {
        let json = std::fs::read_to_string(path).map_err(|source| SchemaCheckError::Io {
            path: path.to_owned(),
            source,
        })?;
        let schema = Schema::from_json(&json).map_err(|message| SchemaCheckError::Parse {
            path: path.to_owned(),
            message,
        })?;
        if schema.app_version != app_version {
            return Err(SchemaCheckError::Parse {
                path: path.to_owned(),
                message: format!(
                    "describes app version {}, its name says {app_version}",
                    schema.app_version
                ),
            });
        }
        Ok(schema)
    }
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, contents: &str) -> Result<(), SchemaCheckError> {
    let io = |source| SchemaCheckError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    if let Err(error) = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io(error));
    }
    Ok(())
}
