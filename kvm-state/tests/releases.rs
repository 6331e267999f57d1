//! The recorded releases (`RELEASES.toml` at the repository root) agree with the code: each
//! release's app version is one this build still describes, with its committed schema file
//! (which the guard in `tests/schema.rs` checks), app versions only grow, and the newest
//! release is at most the current app version (a newer one is the next, unreleased, one).

#![cfg(target_arch = "x86_64")]

use kvm_state::CURRENT_APP_VERSION;

const RELEASES: &str = include_str!("../../RELEASES.toml");
const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");

/// `(version, app_version, commit)` of each `[[release]]`, from its one-line fields.
fn releases() -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for block in RELEASES.split("[[release]]").skip(1) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("a release without {name}: {block}"))
                .trim_matches('"')
                .to_owned()
        };
        out.push((
            field("version"),
            field("app_version").parse().unwrap(),
            field("commit"),
        ));
    }
    out
}

/// `kvm_state::RELEASES`, which `vmstate info` uses, lists the releases of the file.
#[test]
fn test_releases_constant_matches_the_file() {
    let recorded: Vec<(String, u16)> = releases()
        .into_iter()
        .map(|(version, app_version, _)| (version, app_version))
        .collect();
    let constant: Vec<(String, u16)> = kvm_state::RELEASES
        .iter()
        .map(|release| (release.version.to_owned(), release.app_version))
        .collect();
    assert_eq!(constant, recorded);
}

#[test]
fn test_releases_have_schema_files_and_growing_app_versions() {
    let releases = releases();
    assert!(releases.len() >= 3, "{releases:?}");
    let mut previous = 0;
    for (version, app_version, commit) in &releases {
        assert!(
            commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "release {version}: commit {commit:?} is not a full hash"
        );
        assert!(
            *app_version > previous,
            "release {version}: app version {app_version} after {previous}"
        );
        assert!(*app_version <= CURRENT_APP_VERSION, "release {version}");
        let schema = format!("{SCHEMA_DIR}/v{app_version}.json");
        assert!(
            std::path::Path::new(&schema).is_file(),
            "release {version}: {schema} is missing"
        );
        previous = *app_version;
    }
}
