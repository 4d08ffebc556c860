//! A segmented vector: elements in fixed-size chunks that never move once full, indexed by a dense
//! id. Growing it never copies more than one chunk, so no push stalls the engine's write lock in
//! proportion to the projection's size (a `Vec` doubling copies all of it: 0.1-0.2 s at 10M
//! identities for the profiles).
//!
//! The first chunk grows as a `Vec` does (a small projection, such as audit's partial ones, stays
//! small); every later chunk is allocated at its full size, which is address space until written.
//! An index costs one more load than a `Vec`'s, from the chunk list, which is small enough to stay in
//! the cache (a few hundred entries at 10M elements).

use std::mem::size_of;
use std::ops::{Index, IndexMut};

/// Bytes of one chunk, at most: large enough that the chunk list stays short, small enough that
/// allocating one (or the first chunk doubling) is quick.
const CHUNK_BYTES_MAX: usize = 512 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct SegVec<T> {
    /// Every chunk but the last holds exactly [`SegVec::CHUNK_LEN`] elements.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for SegVec<T> {
    fn default() -> Self {
        SegVec { chunks: Vec::new(), len: 0 }
    }
}

impl<T> SegVec<T> {
    /// log2 of the elements in a chunk: the largest power of two that fits [`CHUNK_BYTES_MAX`].
    const CHUNK_SHIFT: u32 =
        (CHUNK_BYTES_MAX / if size_of::<T>() == 0 { 1 } else { size_of::<T>() }).ilog2();
    const CHUNK_LEN: usize = 1 << Self::CHUNK_SHIFT;
    const CHUNK_MASK: usize = Self::CHUNK_LEN - 1;

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < Self::CHUNK_LEN => chunk.push(value),
            _ => {
                // The first chunk starts small and doubles (copying at most half a chunk); later
                // ones are allocated whole, so they never move.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(Self::CHUNK_LEN)
                };
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    /// Elements allocated room for.
    pub(crate) fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    /// Releases the last chunk's spare room (the others have none).
    pub(crate) fn shrink_to_fit(&mut self) {
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.shrink_to_fit();
        }
        self.chunks.shrink_to_fit();
    }
}

impl<T> Index<usize> for SegVec<T> {
    type Output = T;

    #[inline]
    fn index(&self, idx: usize) -> &T {
        &self.chunks[idx >> Self::CHUNK_SHIFT][idx & Self::CHUNK_MASK]
    }
}

impl<T> IndexMut<usize> for SegVec<T> {
    #[inline]
    fn index_mut(&mut self, idx: usize) -> &mut T {
        &mut self.chunks[idx >> Self::CHUNK_SHIFT][idx & Self::CHUNK_MASK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_and_iterates_like_a_vec_across_chunks() {
        let mut seg: SegVec<u64> = SegVec::default();
        let n = SegVec::<u64>::CHUNK_LEN * 3 + 17;
        for value in 0..n as u64 {
            seg.push(value * 3);
        }
        assert_eq!(seg.len(), n);
        assert!((0..n).all(|idx| seg[idx] == idx as u64 * 3));
        seg[SegVec::<u64>::CHUNK_LEN] = 7;
        assert_eq!(seg[SegVec::<u64>::CHUNK_LEN], 7);
        assert_eq!(seg.iter().count(), n);
        assert_eq!(seg.iter().nth(n - 1), Some(&((n as u64 - 1) * 3)));
        seg.shrink_to_fit();
        assert_eq!(seg.capacity(), n);
    }
}
