//! [`Cli`]: the tool for one root type and version map, and how it runs.

use std::error::Error;
use std::ffi::OsString;
use std::fmt::Debug;
use std::io::Write;
use std::marker::PhantomData;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use versionize::{VersionMap, Versionize};

use crate::args::{CliArgs, Command, SchemaCommand, AFTER_HELP};
use crate::failure::Failure;

/// Exit code of a bad file, a failed check, differing snapshots or an i/o error.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a bad command line.
pub const EXIT_USAGE: u8 = 2;

/// The VMM's own check of a loaded state, run by `verify`: `Ok` with a one-line summary,
/// or the reason the state cannot be restored.
pub type VerifyFn<T> = dyn Fn(&T) -> Result<String, Box<dyn Error + Send + Sync>>;

/// What `info` shows of a loaded state (at its data version): `(label, text)` lines.
pub type DescribeFn<T> = dyn Fn(&T, u16) -> Vec<(String, String)>;

/// A command a VMM adds to the tool ([`Cli::command`]): given its parsed arguments and the
/// report's writer, it succeeds or returns the error reported as `<tool>: <command>: <error>`.
pub type CommandFn =
    dyn Fn(&clap::ArgMatches, &mut dyn Write) -> Result<(), Box<dyn Error + Send + Sync>>;

/// The operator tool for snapshots of root type `T` written with a version map: `info`,
/// `verify`, `dump`, `diff`, `convert`, `schema export` and `schema check`.
///
/// See the [crate documentation](crate) for an example.
pub struct Cli<T> {
    pub(crate) name: &'static str,
    pub(crate) version: Option<&'static str>,
    pub(crate) map: VersionMap,
    pub(crate) verify: Option<Box<VerifyFn<T>>>,
    pub(crate) describe: Option<Box<DescribeFn<T>>>,
    extra: Vec<(clap::Command, Box<CommandFn>)>,
    root_type: PhantomData<fn() -> T>,
}

impl<T: Versionize + Debug + 'static> Cli<T> {
    /// The tool called `name` (in usage lines and error messages) for snapshots of `T`
    /// written with `version_map`.
    #[must_use]
    pub fn new(name: &'static str, version_map: VersionMap) -> Self {
        Cli {
            name,
            version: None,
            map: version_map,
            verify: None,
            describe: None,
            extra: Vec::new(),
            root_type: PhantomData,
        }
    }

    /// The version `--version` prints (for example `env!("CARGO_PKG_VERSION")`).
    #[must_use]
    pub fn version(mut self, version: &'static str) -> Self {
        self.version = Some(version);
        self
    }

    /// Runs `check` on every state `verify` loads: `Ok` with a one-line summary printed
    /// after the file name, or the error that makes the state unrestorable.
    #[must_use]
    pub fn verify_with(
        mut self,
        check: impl Fn(&T) -> Result<String, Box<dyn Error + Send + Sync>> + 'static,
    ) -> Self {
        self.verify = Some(Box::new(check));
        self
    }

    /// Adds `describe`'s `(label, text)` lines to what `info` prints of a state this build
    /// reads (for example the host it was saved on).
    #[must_use]
    pub fn describe_with(
        mut self,
        describe: impl Fn(&T, u16) -> Vec<(String, String)> + 'static,
    ) -> Self {
        self.describe = Some(Box::new(describe));
        self
    }

    /// Adds a subcommand of the VMM's own (for example commands on guest memory files or
    /// sealed snapshots): `command` defines its name, help and arguments, `run` runs it.
    #[must_use]
    pub fn command(
        mut self,
        command: clap::Command,
        run: impl Fn(&clap::ArgMatches, &mut dyn Write) -> Result<(), Box<dyn Error + Send + Sync>>
            + 'static,
    ) -> Self {
        self.extra.push((command, Box::new(run)));
        self
    }

    /// Runs the tool on the process's arguments, standard output and standard error.
    pub fn run(&self) -> ExitCode {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let code = self.run_from(std::env::args_os(), &mut out, &mut std::io::stderr());
        ExitCode::from(code)
    }

    /// Runs the tool on `args` (the first is the program name), writing the report to
    /// `out` and the one-line error, if any, to `err`; returns the exit code: 0, or
    /// [`EXIT_FAILURE`] or [`EXIT_USAGE`].
    pub fn run_from<I, S>(&self, args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString> + Clone,
    {
        let matches = match self.clap_command().try_get_matches_from(args) {
            Ok(matches) => matches,
            Err(usage) => return self.usage(&usage, out, err),
        };
        let extra = matches.subcommand().and_then(|(name, sub_matches)| {
            self.extra
                .iter()
                .find(|(command, _)| command.get_name() == name)
                .map(|(_, run)| (name, run, sub_matches))
        });
        let result = match extra {
            Some((name, run, sub_matches)) => run(sub_matches, out)
                .map_err(|e| Failure::new(name).because(&*e))
                .and_then(|()| out.flush().map_err(Failure::from)),
            None => {
                let parsed = match CliArgs::from_arg_matches(&matches) {
                    Ok(parsed) => parsed,
                    Err(usage) => return self.usage(&usage, out, err),
                };
                self.dispatch(parsed.command, out)
                    .and_then(|()| out.flush().map_err(Failure::from))
            }
        };
        match result {
            Ok(()) => 0,
            Err(failure) => {
                // Whatever was printed before the failure belongs before the error line.
                let _ = out.flush();
                if !failure.broken_pipe {
                    // Nothing is left to do if stderr is gone too.
                    let _ = writeln!(err, "{}: {failure}", self.name);
                }
                EXIT_FAILURE
            }
        }
    }

    /// The clap command, with this tool's name and the app versions of its map.
    fn clap_command(&self) -> clap::Command {
        let range = self.map.supported_range();
        let versions =
            clap::value_parser!(u16).range(i64::from(*range.start())..=i64::from(*range.end()));
        let mut command = CliArgs::command()
            .name(self.name)
            .bin_name(self.name)
            .about("Inspect, verify, dump, compare and convert snapshot files")
            .after_help(AFTER_HELP)
            .mut_subcommand("convert", |convert| {
                convert.mut_arg("to_version", |arg| arg.value_parser(versions))
            })
            .mut_subcommand("schema", |schema| {
                schema.mut_subcommand("export", |export| {
                    export.mut_arg("version", |arg| arg.value_parser(versions))
                })
            });
        if let Some(version) = self.version {
            command = command.version(version);
        }
        for (extra, _) in &self.extra {
            command = command.subcommand(extra.clone());
        }
        command
    }

    fn usage(&self, usage: &clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
        if !usage.use_stderr() {
            // --help and --version.
            let text = usage.render().to_string();
            return match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(_) => EXIT_FAILURE,
            };
        }
        if usage.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            // The tool alone: the help, on stderr.
            let _ = write!(err, "{}", usage.render());
            return EXIT_USAGE;
        }
        let _ = writeln!(err, "{}: {}", self.name, usage_line(usage, self.name));
        EXIT_USAGE
    }

    fn dispatch(&self, command: Command, out: &mut dyn Write) -> Result<(), Failure> {
        match command {
            Command::Info { file, schema, size } => {
                self.info(out, &file, &schema, size.max_state_size)
            }
            Command::Verify { file, schema, size } => {
                self.verify(out, &file, &schema, size.max_state_size)
            }
            Command::Dump {
                file,
                json,
                memory,
                schema,
                size,
            } => self.dump(out, &file, &schema, size.max_state_size, json, memory),
            Command::Diff {
                old,
                new,
                schema,
                root,
                size,
            } => self.diff(out, &old, &new, &schema, root, size.max_state_size),
            Command::Convert {
                file,
                to_version,
                output,
                size,
            } => self.convert(out, &file, to_version, &output, size.max_state_size),
            Command::Schema(SchemaCommand::Export { version }) => self.schema_export(out, version),
            Command::Schema(SchemaCommand::Check { old, new }) => {
                self.schema_check(out, &old, &new)
            }
        }
    }
}

/// A command-line error as one line (clap's own text spans several).
fn usage_line(err: &clap::Error, name: &str) -> String {
    let text = err.to_string();
    let first_paragraph: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = first_paragraph.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see {name} --help)")
}
