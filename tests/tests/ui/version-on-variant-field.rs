use versionize::prelude::Versionize;

#[derive(Versionize)]
enum Irq {
    Msi {
        address: u64,
        #[version(start = 2)]
        data: u32,
    },
}

fn main() {}
