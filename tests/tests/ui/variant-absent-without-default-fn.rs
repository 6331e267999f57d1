use versionize::prelude::Versionize;

#[derive(Versionize)]
enum Irq {
    Legacy(u8),
    #[version(start = 2)]
    Msi(u32),
    #[version(end = 3)]
    Old,
}

fn main() {}
