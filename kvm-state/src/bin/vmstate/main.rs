//! `vmstate`: inspect, verify, dump, compare and convert microVM snapshot files, and export
//! or compare the state schema of this build.
//!
//! The tool is [`vmstate_cli::Cli`] for [`kvm_state::MicrovmState`]: `verify` adds the checks every
//! restore makes before touching KVM ([`kvm_state::check_state`]), and `info` the host the
//! state was saved on. Every failure is one line on stderr, `vmstate: <what failed>:
//! <why>`, and a non-zero exit code: 1 for a bad file, a failed check or differing
//! snapshots, 2 for a bad command line. Run `vmstate --help`.

#[cfg(target_arch = "x86_64")]
mod failure;
#[cfg(target_arch = "x86_64")]
mod memory;
#[cfg(target_arch = "x86_64")]
mod seal;

use std::process::ExitCode;

#[cfg(target_arch = "x86_64")]
fn main() -> ExitCode {
    use kvm_state::{version_map, MicrovmState};
    use vmstate_cli::Cli;

    Cli::<MicrovmState>::new("vmstate", version_map())
        .version(env!("CARGO_PKG_VERSION"))
        .verify_with(|state| {
            kvm_state::check_state(state)?;
            Ok(summary(state))
        })
        .describe_with(host_lines)
        .command(memory::command(), memory::run_matches)
        .command(seal::keygen_command(), seal::keygen)
        .command(seal::seal_command(), seal::seal)
        .command(seal::unseal_command(), seal::unseal)
        .command(seal::verify_command(), seal::verify)
        .run()
}

/// What `verify` prints of a sound state.
#[cfg(target_arch = "x86_64")]
fn summary(state: &kvm_state::MicrovmState) -> String {
    // check_state refused overlapping regions, so the sizes add up within u64.
    let memory = state
        .memory
        .iter()
        .fold(0u64, |sum, region| sum.saturating_add(region.size));
    format!(
        "{} vcpu(s), {} serial and {} virtio-mmio device(s), {} memory region(s) of {memory} \
         bytes",
        state.vcpus.len(),
        state.devices.serial.len(),
        state.devices.virtio_mmio.len(),
        state.memory.len(),
    )
}

/// What `info` prints of the host a state was saved on (recorded since app version 3).
#[cfg(target_arch = "x86_64")]
fn host_lines(state: &kvm_state::MicrovmState, data_version: u16) -> Vec<(String, String)> {
    let mut lines = vec![("releases".to_owned(), readers(data_version))];
    lines.extend(saved_on(state, data_version));
    lines
}

/// Which recorded releases read a file of `data_version` (`kvm_state::RELEASES`).
#[cfg(target_arch = "x86_64")]
fn readers(data_version: u16) -> String {
    let readers: Vec<&str> = kvm_state::releases_reading(data_version)
        .map(|release| release.version)
        .collect();
    if readers.is_empty() {
        format!(
            "none of the recorded releases reads it (the newest, {}, reads data versions up to {})",
            kvm_state::RELEASES
                .last()
                .map_or("none", |release| release.version),
            kvm_state::RELEASES
                .last()
                .map_or(0, |release| release.app_version)
        )
    } else {
        format!("{} read it (RELEASES.toml)", readers.join(", "))
    }
}

/// The host the state was saved on.
#[cfg(target_arch = "x86_64")]
fn saved_on(state: &kvm_state::MicrovmState, data_version: u16) -> Vec<(String, String)> {
    let host = &state.host;
    if !host.is_known() {
        let why = if data_version < kvm_state::APP_VERSION_3 {
            format!("not recorded (data version {data_version} predates host facts)")
        } else {
            "not recorded".to_owned()
        };
        return vec![("saved on".to_owned(), why)];
    }
    let tsc = host
        .tsc_khz
        .map_or_else(|| "not reported".to_owned(), |khz| format!("{khz} kHz"));
    let capabilities: Vec<String> = host
        .kvm_capabilities
        .iter()
        .map(|number| {
            kvm_state::HostFacts::relied_capabilities()
                .iter()
                .find(|(known, _)| known == number)
                .map_or_else(|| number.to_string(), |(_, name)| (*name).to_owned())
        })
        .collect();
    vec![
        (
            "saved on".to_owned(),
            format!(
                "{} family {:#x} model {:#x} stepping {}, kernel {}",
                host.cpu_vendor,
                host.cpu_family,
                host.cpu_model,
                host.cpu_stepping,
                host.kernel_release
            ),
        ),
        ("host tsc".to_owned(), tsc),
        ("kvm caps".to_owned(), capabilities.join(", ")),
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn main() -> ExitCode {
    use std::io::Write;
    // Nothing is left to do if stderr is gone too.
    let _ = writeln!(
        std::io::stderr(),
        "vmstate: this build reads x86_64 snapshots only, and this host is not x86_64"
    );
    ExitCode::from(vmstate_cli::EXIT_FAILURE)
}
