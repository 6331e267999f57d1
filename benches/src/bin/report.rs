//! Prints the ratio table of `benches/README.md` from criterion's results.
//!
//! Usage: `cargo run -p benchmarks --bin report [CRITERION_DIR]`. Without an argument it
//! reads `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`.

use std::path::PathBuf;

fn main() {
    let dir = std::env::args_os().nth(1).map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"),
                |target| PathBuf::from(target).join("criterion"),
            )
        },
        PathBuf::from,
    );
    println!("results: {}\n", dir.display());
    print!("{}", benchmarks::report::table(&dir));
}
