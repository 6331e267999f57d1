//! `src/guest_code.rs` is generated from `guest/guest.S`: where GNU `as` is installed, this
//! regenerates it and checks that the committed file is what the source assembles to.

use std::path::Path;
use std::process::Command;

#[test]
fn test_guest_code_matches_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tools = ["as", "objdump", "nm", "python3"];
    if tools
        .iter()
        .any(|tool| Command::new(tool).arg("--version").output().is_err())
    {
        eprintln!("one of {tools:?} is missing: skipping the guest code check");
        return;
    }
    let out = std::env::temp_dir().join(format!("demo-vmm-guest-code-{}.rs", std::process::id()));
    let status = Command::new("python3")
        .arg(root.join("guest/assemble.py"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "guest/assemble.py failed");
    let generated = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let committed = std::fs::read_to_string(root.join("src/guest_code.rs")).unwrap();
    assert!(
        generated == committed,
        "src/guest_code.rs is stale: run `python3 demo-vmm/guest/assemble.py`"
    );
}
