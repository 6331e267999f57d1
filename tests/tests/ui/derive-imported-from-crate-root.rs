// `versionize::Versionize` is the trait only: the derive is in `versionize::prelude` (or
// `versionize_derive`), so that code written for versionize 0.2, which imports both by
// name, never sees two `Versionize` macros.
use versionize::Versionize;

#[derive(Versionize)]
struct Regs {
    rip: u64,
}

fn main() {}
