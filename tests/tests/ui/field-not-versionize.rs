use versionize::prelude::Versionize;

struct HostFd(i32);

#[derive(Versionize)]
struct Device {
    id: u32,
    fd: HostFd,
}

#[derive(Versionize)]
enum Backend {
    File(HostFd),
    None,
}

fn main() {}
