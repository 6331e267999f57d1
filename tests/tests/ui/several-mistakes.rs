use versionize::prelude::Versionize;

// Every mistake of one input is reported at once, each on its own token.
#[derive(Versionize)]
#[version(start = 1)]
struct Regs<'a> {
    #[version(start = 0, strat = 2)]
    rip: u64,
    #[version(start = 4, end = 3, start = 5)]
    rsp: u64,
    #[version(default_fn = 7, ser_fn = "1abc")]
    rflags: &'a u64,
}

fn main() {}
