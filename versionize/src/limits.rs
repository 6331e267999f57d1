//! Limits that keep decoding of untrusted input bounded.
//!
//! Every top-level decode (the outermost `deserialize` call on a thread) gets an allocation
//! budget from the [`VersionMap`](crate::VersionMap)'s [`Limits`]. Decoders check each
//! length prefix against the caps and charge the bytes a collection will hold against the
//! budget *before* allocating, so a short hostile input cannot make the decoder reserve
//! more than the budget, loop for long, or recurse without bound.

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            budget: DEFAULT_BUDGET,
            max_string_len: DEFAULT_MAX_STRING_LEN,
            max_collection_len: DEFAULT_MAX_COLLECTION_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
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
    /// Sets the nesting depth cap.
    #[must_use]
    pub fn with_max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }
}

#[derive(Clone, Copy)]
struct DecodeState {
    depth: u32,
    remaining: u64,
    budget: u64,
}

thread_local! {
    static STATE: Cell<DecodeState> = const {
        Cell::new(DecodeState { depth: 0, remaining: 0, budget: 0 })
    };
}

/// One level of an in-progress decode on this thread.
///
/// The outermost scope starts a fresh budget from the limits; inner scopes share it and
/// count nesting depth. Dropping the scope (also on unwinding) leaves the level.
/// Hand-written [`Versionize`](crate::Versionize) impls that allocate from input lengths
/// should enter a scope and [`charge`](Self::charge) it, as the built-in impls do.
#[must_use]
pub struct DecodeScope {
    // Not Send: the scope is tied to this thread's decode state.
    _thread_bound: PhantomData<*const ()>,
}

impl DecodeScope {
    /// Enters one decode level.
    ///
    /// # Errors
    /// [`VersionizeError::DepthLimit`] when nesting would exceed `limits.max_depth()`.
    #[inline]
    pub fn enter(limits: &Limits) -> VersionizeResult<DecodeScope> {
        STATE.with(|cell| {
            let mut state = cell.get();
            if state.depth == 0 {
                state.remaining = limits.budget;
                state.budget = limits.budget;
            }
            if state.depth >= limits.max_depth {
                return Err(VersionizeError::DepthLimit {
                    limit: limits.max_depth,
                });
            }
            state.depth += 1;
            cell.set(state);
            Ok(DecodeScope {
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
        let len = read_u64(reader)?;
        if len > limits.max_collection_len {
            return Err(VersionizeError::LengthLimit {
                what: "collection",
                found: len,
                limit: limits.max_collection_len,
            });
        }
        let per = u64::try_from(elem_size.max(1)).unwrap_or(u64::MAX);
        self.charge(len.saturating_mul(per))?;
        usize::try_from(len).map_err(|_| VersionizeError::OutOfRange("collection length"))
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

impl Drop for DecodeScope {
    fn drop(&mut self) {
        STATE.with(|cell| {
            let mut state = cell.get();
            state.depth = state.depth.saturating_sub(1);
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

/// Largest number of elements reserved up front for a collection whose length came from
/// the input: enough for typical state, small enough that a truncated input claiming a
/// large (in-budget) length does not allocate it all before failing.
#[inline]
pub(crate) fn initial_capacity<T>(len: usize) -> usize {
    const PREALLOC_BYTES: usize = 256 * 1024;
    let per = size_of::<T>().max(1);
    len.min(PREALLOC_BYTES / per)
}
