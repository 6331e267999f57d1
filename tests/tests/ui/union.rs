use versionize::prelude::Versionize;

#[derive(Versionize)]
union Chip {
    pic: [u8; 512],
    ioapic: [u32; 128],
}

fn main() {}
