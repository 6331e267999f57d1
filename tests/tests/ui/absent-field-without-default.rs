use versionize::prelude::Versionize;

#[derive(Versionize)]
struct Timer {
    count: u64,
}

#[derive(Versionize)]
struct Pit {
    #[version(start = 2)]
    timer: Timer,
}

fn main() {}
