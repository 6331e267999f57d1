//! The `vmstate` operator tool as a library: a VMM ships `info`, `verify`, `dump`, `diff`,
//! `convert` and `schema export/check` for its own root type and version map in its own
//! binary, with a few lines.
//!
//! ```no_run
//! use versionize::prelude::*;
//! use vmstate_cli::Cli;
//!
//! #[derive(Debug, Versionize)]
//! struct MyVmmState {
//!     vcpus: Vec<u64>,
//!     memory_mib: u32,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let version_map = VersionMap::new(); // the VMM's own map
//!     Cli::<MyVmmState>::new("my-vmm-state", version_map)
//!         .version(env!("CARGO_PKG_VERSION"))
//!         .verify_with(|state| {
//!             if state.vcpus.is_empty() {
//!                 return Err("no vCPUs".into());
//!             }
//!             Ok(format!("{} vcpu(s)", state.vcpus.len()))
//!         })
//!         .run()
//! }
//! ```
//!
//! `my-vmm-state dump vm.snap --json` prints the state by field name (64-bit integers as
//! hex strings that `jq` keeps exactly), `my-vmm-state diff a.snap b.snap` lists the
//! fields that differ and exits 1 when any do, and every command that reads state accepts
//! `--schema FILE`: the schema export of the build that wrote the file, which decodes a
//! snapshot of a data version this build does not know, or of another root type
//! (`--root`), without its Rust types. Errors are one line on stderr:
//! `my-vmm-state: <what>: <why>`. The commands are described in `docs/VMSTATE.md`.
//!
//! [`Cli::command`] adds a VMM's own subcommands; [`Cli::run_from`] runs the tool on given
//! arguments and writers, for tests.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;
mod cli;
mod commands;
mod failure;
mod render;

pub use crate::cli::{Cli, CommandFn, DescribeFn, VerifyFn, EXIT_FAILURE, EXIT_USAGE};
/// The `clap` this crate builds its commands with, for [`Cli::command`].
pub use clap;
