//! Stack use of nested values: decoding never overflows a 2 MiB thread stack at any depth it
//! accepts, whatever the size of the values each level holds, and saving refuses a value
//! nested deeper than the decoder accepts. Every case runs on a spawned thread with a 2 MiB
//! stack (the default of spawned threads); an overflow would abort the test binary.

use std::cell::Cell;
use std::io::{Read, Write};

use versionize::prelude::*;

/// Stack of the threads the cases run on.
const THREAD_STACK: usize = 2 << 20;

thread_local! {
    /// Lowest stack address a [`Probe`] saw while decoding on this thread.
    static DEEPEST: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A field that records how deep in the stack it was decoded; encodes as nothing.
#[derive(Debug, Default, Clone, PartialEq)]
struct Probe;

impl Versionize for Probe {
    fn serialize<W: Write>(&self, _: &mut W, _: &VersionMap, _: u16) -> VersionizeResult<()> {
        Ok(())
    }
    fn deserialize<R: Read>(_: &mut R, _: &VersionMap, _: u16) -> VersionizeResult<Self> {
        let marker = 0u8;
        let here = std::ptr::addr_of!(marker) as usize;
        DEEPEST.with(|deepest| deepest.set(deepest.get().min(here)));
        Ok(Probe)
    }
    fn version() -> u16 {
        1
    }
}

/// Runs `f` on a thread with a 2 MiB stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(f)
        .expect("spawn a thread")
        .join()
        .expect("the case thread panicked")
}

/// What one depth gave: whether saving and loading accepted it, and the stack the decode
/// used (bytes from the decode call to the deepest probe).
#[derive(Debug)]
struct Outcome {
    saved: bool,
    loaded: bool,
    stack_used: usize,
}

macro_rules! page_node {
    ($($name:ident: $elem:ty; $len:expr),* $(,)?) => {$(
        /// A linked list whose nodes hold a large page by value.
        #[derive(Debug, Clone, PartialEq, Versionize)]
        struct $name {
            page: [$elem; $len],
            probe: Probe,
            next: Option<Box<$name>>,
        }

        impl $name {
            /// A chain of `depth` nodes (built iteratively: no recursion here).
            fn chain(depth: usize) -> Option<Box<$name>> {
                let mut head = None;
                for _ in 0..depth {
                    head = Some(Box::new($name { page: [1 as $elem; $len], probe: Probe, next: head }));
                }
                head
            }

            /// The encoding of a chain of `depth` nodes, built byte by byte as a hostile
            /// file would be (the encoder might refuse to produce it).
            fn hostile(depth: usize) -> Vec<u8> {
                let page = vec![0u8; size_of::<[$elem; $len]>()];
                let mut bytes = Vec::new();
                for level in 0..depth {
                    bytes.extend_from_slice(&page);
                    bytes.push(u8::from(level + 1 < depth));
                }
                bytes
            }

            fn outcome(depth: usize) -> Outcome {
                on_small_stack(move || {
                    let map = VersionMap::new();
                    let saved = $name::chain(depth).map(|head| {
                        let mut bytes = Vec::new();
                        (*head).serialize(&mut bytes, &map, 1).map(|()| bytes)
                    });
                    let bytes = $name::hostile(depth);
                    if let Some(Ok(saved)) = &saved {
                        // The pages are ones when saved, zeros in the hostile bytes.
                        assert_eq!(saved.len(), bytes.len(), "{}: depth {depth}", stringify!($name));
                    }
                    let marker = 0u8;
                    let top = std::ptr::addr_of!(marker) as usize;
                    DEEPEST.with(|deepest| deepest.set(usize::MAX));
                    let loaded = $name::deserialize(&mut bytes.as_slice(), &map, 1);
                    let deepest = DEEPEST.with(Cell::get);
                    if let Err(err) = &loaded {
                        assert!(
                            matches!(err.root(), VersionizeError::StackLimit { .. } | VersionizeError::DepthLimit { .. }),
                            "{}: depth {depth}: {err}", stringify!($name)
                        );
                    }
                    if let Some(Err(err)) = &saved {
                        assert!(
                            matches!(err.root(), VersionizeError::StackLimit { .. } | VersionizeError::DepthLimit { .. }),
                            "{}: depth {depth}: {err}", stringify!($name)
                        );
                    }
                    Outcome {
                        saved: saved.is_none_or(|saved| saved.is_ok()),
                        loaded: loaded.is_ok(),
                        stack_used: top.saturating_sub(deepest),
                    }
                })
            }
        }
    )*};
}

page_node! {
    Tiny: u8; 1,
    Small: u64; 16,
    Medium: u64; 128,
    PageNode: u64; 1024,
    Large: u64; 4096,
    Huge: u8; 100_000,
}

/// Every depth from 1 to past the first refusal: loading accepts exactly what saving
/// accepts, and never overflows.
fn sweep(name: &str, outcome: fn(usize) -> Outcome) -> (usize, usize) {
    let mut deepest_accepted = 0;
    let mut most_stack = 0;
    for depth in 1..=400 {
        let result = outcome(depth);
        assert_eq!(
            result.saved, result.loaded,
            "{name} at depth {depth}: saving and loading disagree ({result:?})"
        );
        if !result.loaded {
            break;
        }
        deepest_accepted = depth;
        most_stack = most_stack.max(result.stack_used);
    }
    println!("{name}: deepest accepted {deepest_accepted}, stack used {most_stack} bytes");
    (deepest_accepted, most_stack)
}

#[test]
fn test_stack_large_frames_never_overflow_and_save_refuses_what_load_would() {
    for (name, outcome) in [
        ("Tiny", Tiny::outcome as fn(usize) -> Outcome),
        ("Small", Small::outcome),
        ("Medium", Medium::outcome),
        ("PageNode", PageNode::outcome),
        ("Large", Large::outcome),
        ("Huge", Huge::outcome),
    ] {
        let (deepest, stack) = sweep(name, outcome);
        assert!(deepest >= 1, "{name}: one level must load");
        assert!(stack < THREAD_STACK / 2, "{name}: {stack} bytes of stack");
    }
}

/// A hand-written recursive type whose frames hold far more than it tells its scope (it
/// enters with [`DecodeScope::enter`], holding nothing): the accounted stack cannot see its
/// frames, the stack actually used can.
#[derive(Debug)]
struct Opaque(Option<Box<Opaque>>);

impl Versionize for Opaque {
    fn serialize<W: Write>(
        &self,
        writer: &mut W,
        map: &VersionMap,
        v: u16,
    ) -> VersionizeResult<()> {
        self.0.serialize(writer, map, v)
    }
    fn deserialize<R: Read>(reader: &mut R, map: &VersionMap, v: u16) -> VersionizeResult<Self> {
        let _scope = versionize::DecodeScope::enter(map.limits())?;
        // 16 KiB of frame the optimizer must keep.
        let mut scratch = [0u8; 16 * 1024];
        std::hint::black_box(&mut scratch);
        Ok(Opaque(Option::deserialize(reader, map, v)?))
    }
    fn version() -> u16 {
        1
    }
}

#[test]
fn test_stack_real_guard_stops_frames_the_accounting_cannot_see() {
    let err = on_small_stack(|| {
        // A depth limit that would allow 2 × 100,000 levels: only the stack stops it.
        let map =
            VersionMap::new().with_limits(versionize::Limits::default().with_max_depth(200_000));
        let input = vec![1u8; 100_000];
        let err = Opaque::deserialize(&mut input.as_slice(), &map, 1).unwrap_err();
        err.to_string()
    });
    assert!(
        err.contains("bytes of stack, above the limit of 1048576"),
        "{err}"
    );
}

#[test]
fn test_stack_save_refuses_a_value_deeper_than_load_accepts() {
    let errors = on_small_stack(|| {
        let map = VersionMap::new();
        let mut out = Vec::new();
        // Past the depth limit: 65 levels of two scopes each.
        let deep = Tiny::chain(65).unwrap();
        let depth = (*deep)
            .serialize(&mut out, &map, 1)
            .unwrap_err()
            .to_string();
        // Past the stack limit long before the depth limit: 16 levels of 8 KiB pages.
        let heavy = PageNode::chain(16).unwrap();
        let stack = (*heavy)
            .serialize(&mut out, &map, 1)
            .unwrap_err()
            .to_string();
        // One level less of each saves and loads.
        for bytes in [
            {
                let mut b = Vec::new();
                (*Tiny::chain(64).unwrap())
                    .serialize(&mut b, &map, 1)
                    .unwrap();
                Tiny::deserialize(&mut b.as_slice(), &map, 1).unwrap();
                b
            },
            {
                let mut b = Vec::new();
                (*PageNode::chain(15).unwrap())
                    .serialize(&mut b, &map, 1)
                    .unwrap();
                PageNode::deserialize(&mut b.as_slice(), &map, 1).unwrap();
                b
            },
        ] {
            assert!(!bytes.is_empty());
        }
        (depth, stack)
    });
    assert!(
        errors.0.contains("nesting deeper than the limit of 128"),
        "{}",
        errors.0
    );
    assert!(
        errors
            .1
            .contains("bytes of stack, above the limit of 1048576"),
        "{}",
        errors.1
    );
}
