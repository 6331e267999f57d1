//! Limits that keep decoding of untrusted input bounded.
//!
//! Every top-level decode (the outermost `deserialize` call on a thread) gets an allocation
//! budget from the [`VersionMap`](crate::VersionMap)'s [`Limits`]. Decoders check each
//! length prefix against the caps and charge what they will allocate, at its real size
//! (vector elements, string bytes, boxed values, hash buckets, B-tree nodes), against the
//! budget *before* allocating, so a short hostile input cannot make the decoder allocate
//! more than the budget or loop for long.
//!
//! Nesting is bounded twice: by depth, and by the stack the open levels take. Each level
//! ([`DecodeScope`], and its mirror [`EncodeScope`] when encoding) is accounted the values
//! its frames hold, so a value nested deeper than the decoder accepts is refused when it is
//! saved; decoding also checks the stack actually used since its outermost level.

use std::alloc::Layout;
use std::cell::Cell;
use std::io::Read;
use std::marker::PhantomData;

use crate::{VersionizeError, VersionizeResult};

/// Default allocation budget of one top-level decode: 10 MiB, as Firecracker.
pub const DEFAULT_BUDGET: u64 = 10 * 1024 * 1024;
/// Default cap on the byte length of one `String`.
pub const DEFAULT_MAX_STRING_LEN: u64 = 1024 * 1024;
/// Default cap on the element count of one collection.
pub const DEFAULT_MAX_COLLECTION_LEN: u64 = DEFAULT_BUDGET;
/// Default cap on the nesting depth of derived types and collections.
pub const DEFAULT_MAX_DEPTH: u32 = 128;

/// Default cap on the stack one top-level decode or encode uses: 1 MiB, half the 2 MiB stack
/// of a spawned thread.
pub const DEFAULT_MAX_STACK: u64 = 1024 * 1024;

/// Bounds for decoding untrusted input.
///
/// # Example
/// ```
/// use versionize::{Limits, VersionMap};
///
/// let map = VersionMap::new().with_limits(Limits::default().with_budget(1 << 20));
/// assert_eq!(map.limits().budget(), 1 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    budget: u64,
    max_string_len: u64,
    max_collection_len: u64,
    max_depth: u32,
    max_stack: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            budget: DEFAULT_BUDGET,
            max_string_len: DEFAULT_MAX_STRING_LEN,
            max_collection_len: DEFAULT_MAX_COLLECTION_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
            max_stack: DEFAULT_MAX_STACK,
        }
    }
}

impl Limits {
    /// Bytes that one top-level decode may allocate for strings and collections.
    #[must_use]
    pub fn budget(&self) -> u64 {
        self.budget
    }
    /// Largest accepted `String` byte length.
    #[must_use]
    pub fn max_string_len(&self) -> u64 {
        self.max_string_len
    }
    /// Largest accepted element count of one collection.
    #[must_use]
    pub fn max_collection_len(&self) -> u64 {
        self.max_collection_len
    }
    /// Deepest accepted nesting of derived types and collections.
    #[must_use]
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }
    /// Stack bytes one top-level decode or encode may use below its outermost scope.
    ///
    /// Checked twice at every scope: against the stack accounted to the open scopes (the
    /// values their frames hold, weighed the same way by encoder and decoder, so saving
    /// refuses what loading would), and on decode against the stack actually used since the
    /// outermost scope.
    #[must_use]
    pub fn max_stack(&self) -> u64 {
        self.max_stack
    }
    /// Sets the allocation budget.
    #[must_use]
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget = bytes;
        self
    }
    /// Sets the `String` length cap.
    #[must_use]
    pub fn with_max_string_len(mut self, bytes: u64) -> Self {
        self.max_string_len = bytes;
        self
    }
    /// Sets the collection length cap.
    #[must_use]
    pub fn with_max_collection_len(mut self, elements: u64) -> Self {
        self.max_collection_len = elements;
        self
    }
    /// Sets the stack cap; see [`max_stack`](Self::max_stack).
    #[must_use]
    pub fn with_max_stack(mut self, bytes: u64) -> Self {
        self.max_stack = bytes;
        self
    }
    /// Sets the nesting depth cap.
    #[must_use]
    pub fn with_max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }
}

/// Stack bytes one scope is accounted for: the values its frames hold (`held` bytes) four
/// times over (a debug build keeps a decoded value, its `Result`s and the moved copies in
/// separate slots: about three times over per scope, measured) plus a fixed allowance for
/// the frames themselves. Encoder and decoder use
/// the same figure, so a value the decoder would refuse is refused when it is saved.
#[inline]
const fn stack_cost(held: usize) -> u64 {
    (held as u64)
        .saturating_mul(STACK_COST_PER_HELD_BYTE)
        .saturating_add(STACK_COST_PER_SCOPE)
}

/// Accounted stack bytes per byte of value a scope holds: a debug build keeps a decoded
/// value, its `Result`s and the moved copies in separate slots (about three copies per
/// scope, measured), so four leave a margin. See [`Limits::max_stack`].
pub const STACK_COST_PER_HELD_BYTE: u64 = 4;
/// Accounted stack bytes per scope, on top of the values it holds: the frames' own
/// bookkeeping. See [`Limits::max_stack`].
pub const STACK_COST_PER_SCOPE: u64 = 2048;

#[derive(Clone, Copy)]
struct DecodeState {
    depth: u32,
    remaining: u64,
    budget: u64,
    /// Stack accounted to the open scopes.
    stack_cost: u64,
    /// Address of a local of the outermost scope's caller.
    stack_top: usize,
    /// Budget of the next top-level decode when a [`BudgetOverride`] is alive.
    budget_override: Option<u64>,
}

#[derive(Clone, Copy)]
struct EncodeState {
    depth: u32,
    stack_cost: u64,
}

thread_local! {
    static STATE: Cell<DecodeState> = const {
        Cell::new(DecodeState {
            depth: 0,
            remaining: 0,
            budget: 0,
            stack_cost: 0,
            stack_top: 0,
            budget_override: None,
        })
    };
    static ENCODE: Cell<EncodeState> = const {
        Cell::new(EncodeState { depth: 0, stack_cost: 0 })
    };
}

/// An address on the current stack: of a local of the (inlined) caller.
#[inline(always)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::ptr::addr_of!(marker) as usize
}

/// One level of an in-progress decode on this thread.
///
/// The outermost scope starts a fresh budget from the limits; inner scopes share it, count
/// nesting depth and account for the stack their frames use. Dropping the scope (also on
/// unwinding) leaves the level. Hand-written [`Versionize`](crate::Versionize) impls that
/// allocate from input lengths or recurse should enter a scope and [`charge`](Self::charge)
/// it, as the built-in impls do, and enter an [`EncodeScope`] holding the same bytes when
/// they serialize, so that saving refuses what loading would.
#[must_use]
pub struct DecodeScope {
    /// Stack bytes this scope accounted for, given back on drop.
    stack_cost: u64,
    // Not Send: the scope is tied to this thread's decode state.
    _thread_bound: PhantomData<*const ()>,
}

impl DecodeScope {
    /// Enters one decode level that holds no value of its own on the stack.
    ///
    /// # Errors
    /// As [`enter_holding`](Self::enter_holding).
    #[inline]
    pub fn enter(limits: &Limits) -> VersionizeResult<DecodeScope> {
        Self::enter_holding(limits, 0)
    }

    /// Enters one decode level whose frames hold `held` bytes of values on the stack
    /// (`size_of` of the value being built).
    ///
    /// # Errors
    /// [`VersionizeError::DepthLimit`] when nesting would exceed `limits.max_depth()`;
    /// [`VersionizeError::StackLimit`] when the stack accounted to the open scopes, or the
    /// stack actually used since the outermost scope, would exceed `limits.max_stack()`.
    #[inline]
    pub fn enter_holding(limits: &Limits, held: usize) -> VersionizeResult<DecodeScope> {
        let here = stack_address();
        let cost = stack_cost(held);
        STATE.with(|cell| {
            let mut state = cell.get();
            if state.depth == 0 {
                let budget = state.budget_override.unwrap_or(limits.budget);
                state.remaining = budget;
                state.budget = budget;
                state.stack_cost = 0;
                state.stack_top = here;
            }
            if state.depth >= limits.max_depth {
                return Err(VersionizeError::DepthLimit {
                    limit: limits.max_depth,
                });
            }
            let accounted = state.stack_cost.saturating_add(cost);
            let used = u64::try_from(state.stack_top.abs_diff(here)).unwrap_or(u64::MAX);
            if accounted > limits.max_stack || used > limits.max_stack {
                return Err(VersionizeError::StackLimit {
                    needed: accounted.max(used),
                    limit: limits.max_stack,
                });
            }
            state.stack_cost = accounted;
            state.depth += 1;
            cell.set(state);
            Ok(DecodeScope {
                stack_cost: cost,
                _thread_bound: PhantomData,
            })
        })
    }

    /// Takes `bytes` from the budget of the current top-level decode.
    ///
    /// # Errors
    /// [`VersionizeError::BudgetExceeded`] when fewer than `bytes` remain.
    #[inline]
    pub fn charge(&self, bytes: u64) -> VersionizeResult<()> {
        charge_open(bytes)
    }

    /// Reads a `u64` element count and checks it against the collection cap, charging
    /// nothing. The caller charges what the collection will allocate before allocating.
    ///
    /// # Errors
    /// I/O errors or [`VersionizeError::LengthLimit`].
    #[inline]
    pub(crate) fn read_len<R: Read>(reader: &mut R, limits: &Limits) -> VersionizeResult<usize> {
        let len = read_u64(reader)?;
        if len > limits.max_collection_len {
            return Err(VersionizeError::LengthLimit {
                what: "collection",
                found: len,
                limit: limits.max_collection_len,
            });
        }
        usize::try_from(len).map_err(|_| VersionizeError::OutOfRange("collection length"))
    }

    /// Reads a `u64` element count, checks it against the collection cap, and charges
    /// `count * max(elem_size, 1)` bytes. Returns the count.
    ///
    /// Zero-sized elements are charged one byte each so that a huge count of them cannot
    /// make the decoder loop for long.
    ///
    /// # Errors
    /// I/O errors, [`VersionizeError::LengthLimit`] or [`VersionizeError::BudgetExceeded`].
    #[inline]
    pub fn read_collection_len<R: Read>(
        &self,
        reader: &mut R,
        limits: &Limits,
        elem_size: usize,
    ) -> VersionizeResult<usize> {
        let len = Self::read_len(reader, limits)?;
        let per = u64::try_from(elem_size.max(1)).unwrap_or(u64::MAX);
        self.charge(u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(per))?;
        Ok(len)
    }

    /// Reads a `u64` string byte length, checks it against the string cap and charges it.
    ///
    /// # Errors
    /// I/O errors, [`VersionizeError::LengthLimit`] or [`VersionizeError::BudgetExceeded`].
    #[inline]
    pub fn read_string_len<R: Read>(
        &self,
        reader: &mut R,
        limits: &Limits,
    ) -> VersionizeResult<usize> {
        let len = read_u64(reader)?;
        if len > limits.max_string_len {
            return Err(VersionizeError::LengthLimit {
                what: "String",
                found: len,
                limit: limits.max_string_len,
            });
        }
        self.charge(len)?;
        usize::try_from(len).map_err(|_| VersionizeError::OutOfRange("string length"))
    }
}

/// Takes `bytes` from the budget of the decode in progress on this thread; the caller is
/// inside a [`DecodeScope`].
#[inline]
pub(crate) fn charge_open(bytes: u64) -> VersionizeResult<()> {
    STATE.with(|cell| {
        let mut state = cell.get();
        if bytes > state.remaining {
            return Err(VersionizeError::BudgetExceeded {
                requested: bytes,
                remaining: state.remaining,
                budget: state.budget,
            });
        }
        state.remaining -= bytes;
        cell.set(state);
        Ok(())
    })
}

impl Drop for DecodeScope {
    #[inline]
    fn drop(&mut self) {
        STATE.with(|cell| {
            let mut state = cell.get();
            state.depth = state.depth.saturating_sub(1);
            state.stack_cost = state.stack_cost.saturating_sub(self.stack_cost);
            cell.set(state);
        });
    }
}

/// Gives the top-level decodes on this thread another budget than their limits' while it
/// lives.
///
/// A caller that knows more than the [`VersionMap`](crate::VersionMap) does sets it around a
/// decode: the `snapshot` crate, which knows the length of the state before decoding it,
/// allows a state that fits its cap on disk as much memory as its size calls for. Dropping
/// it restores the previous budget.
///
/// # Example
/// ```
/// use versionize::limits::BudgetOverride;
/// use versionize::{Limits, VersionMap, Versionize};
///
/// let map = VersionMap::new().with_limits(Limits::default().with_budget(100));
/// let mut bytes = Vec::new();
/// vec![0u8; 1000].serialize(&mut bytes, &map, 1).unwrap();
/// assert!(Vec::<u8>::deserialize(&mut bytes.as_slice(), &map, 1).is_err());
/// let _budget = BudgetOverride::new(2000);
/// assert!(Vec::<u8>::deserialize(&mut bytes.as_slice(), &map, 1).is_ok());
/// ```
#[must_use]
pub struct BudgetOverride {
    previous: Option<u64>,
    _thread_bound: PhantomData<*const ()>,
}

impl BudgetOverride {
    /// Makes `bytes` the budget of every top-level decode on this thread until the returned
    /// guard is dropped.
    pub fn new(bytes: u64) -> BudgetOverride {
        let previous = STATE.with(|cell| {
            let mut state = cell.get();
            let previous = state.budget_override.replace(bytes);
            cell.set(state);
            previous
        });
        BudgetOverride {
            previous,
            _thread_bound: PhantomData,
        }
    }
}

impl Drop for BudgetOverride {
    fn drop(&mut self) {
        STATE.with(|cell| {
            let mut state = cell.get();
            state.budget_override = self.previous;
            cell.set(state);
        });
    }
}

/// One level of an in-progress encode on this thread: the mirror of [`DecodeScope`].
///
/// Every type that enters a [`DecodeScope`] when it decodes enters an `EncodeScope` holding
/// the same bytes when it encodes, so that the encoder counts the same nesting depth and
/// stack as the decoder will: a value nested deeper than the decoder accepts is refused
/// when it is saved, not discovered when it is restored.
#[must_use]
pub struct EncodeScope {
    stack_cost: u64,
    _thread_bound: PhantomData<*const ()>,
}

impl EncodeScope {
    /// Enters one encode level whose decoding counterpart holds `held` bytes on the stack
    /// (see [`DecodeScope::enter_holding`]).
    ///
    /// # Errors
    /// [`VersionizeError::DepthLimit`] or [`VersionizeError::StackLimit`], as the decoder
    /// would return for the same value.
    #[inline]
    pub fn enter_holding(limits: &Limits, held: usize) -> VersionizeResult<EncodeScope> {
        let cost = stack_cost(held);
        // The common path stays small so that it inlines into every derived `serialize`
        // (and leaves the writer's own small writes inlined there); the errors are cold.
        let entered = ENCODE.with(|cell| {
            let mut state = cell.get();
            if state.depth == 0 {
                state.stack_cost = 0;
            }
            let accounted = state.stack_cost.saturating_add(cost);
            if state.depth >= limits.max_depth || accounted > limits.max_stack {
                return false;
            }
            state.stack_cost = accounted;
            state.depth += 1;
            cell.set(state);
            true
        });
        if entered {
            Ok(EncodeScope {
                stack_cost: cost,
                _thread_bound: PhantomData,
            })
        } else {
            Err(encode_limit_error(limits, cost))
        }
    }
}

/// The error of an [`EncodeScope`] that would exceed `limits`: the depth first, as the
/// decoder reports it.
#[cold]
#[inline(never)]
fn encode_limit_error(limits: &Limits, cost: u64) -> VersionizeError {
    let state = ENCODE.with(Cell::get);
    if state.depth >= limits.max_depth {
        VersionizeError::DepthLimit {
            limit: limits.max_depth,
        }
    } else {
        let open = if state.depth == 0 {
            0
        } else {
            state.stack_cost
        };
        VersionizeError::StackLimit {
            needed: open.saturating_add(cost),
            limit: limits.max_stack,
        }
    }
}

impl Drop for EncodeScope {
    #[inline]
    fn drop(&mut self) {
        ENCODE.with(|cell| {
            let mut state = cell.get();
            state.depth = state.depth.saturating_sub(1);
            state.stack_cost = state.stack_cost.saturating_sub(self.stack_cost);
            cell.set(state);
        });
    }
}

#[inline]
fn read_u64<R: Read>(reader: &mut R) -> VersionizeResult<u64> {
    let mut bytes = [0u8; 8];
    reader.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Bytes of the first reservation of a vector decoded from input, and of every growth step
/// until it holds that much: a truncated input claiming a large (in-budget) length fails
/// having reserved at most this, or twice what it actually supplied.
const GROW_BYTES: usize = 256 * 1024;

/// How many more elements to reserve for a vector decoded from input that holds `have` of
/// the `left` still to read: at least [`GROW_BYTES`] worth, doubling with what was read, and
/// never beyond the claimed length, so that the final capacity is exactly the length (which
/// the budget was charged) and not the next power of two.
#[inline]
pub(crate) fn grow_step<T>(have: usize, left: usize) -> usize {
    let first = (GROW_BYTES / size_of::<T>().max(1)).max(1);
    left.min(first.max(have))
}

/// Heap bytes a `Box<T>` allocates.
#[inline]
pub(crate) fn box_bytes<T>() -> u64 {
    to_u64(size_of::<T>())
}

/// Heap bytes an `Arc<T>` or `Rc<T>` allocates: two counters, then the value.
#[inline]
pub(crate) fn shared_bytes<T>() -> u64 {
    let counters = Layout::new::<[usize; 2]>();
    counters
        .extend(Layout::new::<T>())
        .map_or(u64::MAX, |(layout, _)| to_u64(layout.pad_to_align().size()))
}

/// Heap bytes a hash table (`HashMap`, `HashSet`) with room for `len` entries of `E`
/// allocates: the standard library's table has a power-of-two number of buckets at most
/// 7/8 full, each an entry plus a control byte, and a group of spare control bytes.
#[inline]
pub(crate) fn hash_table_bytes<E>(len: usize) -> u64 {
    /// Control bytes past the last bucket (the widest SIMD group).
    const GROUP: usize = 16;
    if len == 0 {
        return 0;
    }
    // Small tables get up to 16 buckets (fewer for large entries: 16 is the most).
    let buckets = if len < 15 {
        16
    } else {
        match len
            .checked_mul(8)
            .map(|n| (n / 7).checked_next_power_of_two())
        {
            Some(Some(buckets)) => buckets,
            _ => return u64::MAX,
        }
    };
    let align = align_of::<E>().max(GROUP);
    let entries = to_u64(size_of::<E>()).saturating_mul(to_u64(buckets));
    let entries = entries.saturating_add(to_u64(align - 1)) / to_u64(align) * to_u64(align);
    entries.saturating_add(to_u64(buckets + GROUP))
}

/// Heap bytes a B-tree (`BTreeMap<K, V>`, `BTreeSet<K>` with `V = ()`) of `len` entries
/// allocates at most. The standard library's nodes hold up to 11 entries and, built by
/// insertion, every node but the root holds at least 5; internal nodes add 12 child
/// pointers and have at least 6 children.
#[inline]
pub(crate) fn btree_bytes<K, V>(len: usize) -> u64 {
    const CAPACITY: usize = 11;
    const MIN_LEN: u64 = 5;
    if len == 0 {
        return 0;
    }
    let node = || -> Option<(Layout, Layout)> {
        let header = Layout::new::<(usize, u16, u16)>();
        let (leaf, _) = header.extend(Layout::array::<K>(CAPACITY).ok()?).ok()?;
        let (leaf, _) = leaf.extend(Layout::array::<V>(CAPACITY).ok()?).ok()?;
        let leaf = leaf.pad_to_align();
        let (internal, _) = leaf
            .extend(Layout::array::<usize>(CAPACITY + 1).ok()?)
            .ok()?;
        Some((leaf, internal.pad_to_align()))
    };
    let Some((leaf, internal)) = node() else {
        return u64::MAX;
    };
    let nodes = to_u64(len) / MIN_LEN + 1;
    let internal_nodes = nodes / 6 + 1;
    nodes
        .saturating_mul(to_u64(leaf.size()))
        .saturating_add(internal_nodes.saturating_mul(to_u64(internal.size() - leaf.size())))
}

#[inline]
fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
