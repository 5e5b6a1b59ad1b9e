//! Content-defined chunking: FastCDC 2020 with the repository's gear seed, over any `Read`.
//!
//! Implements the chunking rules of spec/02-crypto.md (chunker). No threads; the only I/O is
//! reading from the caller's reader. One `Chunker` is reused across files so its buffer is
//! allocated once per worker.

use std::io::{self, Read};

use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, MASKS};

/// Chunk size bounds, fixed per repository at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Smallest chunk (except the last of a file).
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB.
    fn default() -> Self {
        Self {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds FastCDC accepts: 64 B ≤ min ≤ avg ≤ max ≤ 16 MiB, avg in 256 B..=4 MiB.
    pub fn validate(&self) -> Result<(), String> {
        let ok = (fastcdc::v2020::MINIMUM_MIN..=fastcdc::v2020::MINIMUM_MAX).contains(&self.min)
            && (fastcdc::v2020::AVERAGE_MIN..=fastcdc::v2020::AVERAGE_MAX).contains(&self.avg)
            && (fastcdc::v2020::MAXIMUM_MIN..=fastcdc::v2020::MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes min {} / avg {} / max {} are invalid (need 64 B <= min <= avg <= max <= 16 MiB, avg 256 B..=4 MiB)",
                self.min, self.avg, self.max
            ))
        }
    }
}

/// A reusable FastCDC chunker.
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
}

impl Chunker {
    /// A chunker for `params` (which must be valid) and the repository's seed.
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        let bits = logarithm2(params.avg);
        // Normalization level 1, as FastCDC 2020 recommends.
        let mask_s = MASKS[(bits + 1) as usize];
        let mask_l = MASKS[(bits - 1) as usize];
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Self {
            params,
            gear,
            gear_ls,
            mask_s,
            mask_l,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            eof: true,
        }
    }

    /// Starts a new stream.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.len = 0;
        self.eof = false;
    }

    fn fill(&mut self, reader: &mut dyn Read) -> io::Result<()> {
        // Room for two maximal chunks, so the memmove below stays under one byte per byte read.
        let want = (2 * self.params.max as usize).max(4 * 1024 * 1024);
        let _ = self.buf.drain(..self.pos);
        self.pos = 0;
        if self.buf.capacity() < want {
            self.buf.reserve_exact(want - self.buf.len());
        }
        // Reading into spare capacity touches only the pages the data needs: a small file
        // costs kilobytes of memory, not the whole buffer.
        let limit = (want - self.buf.len()) as u64;
        let n = reader.take(limit).read_to_end(&mut self.buf)?;
        if (n as u64) < limit {
            self.eof = true;
        }
        self.len = self.buf.len();
        Ok(())
    }

    /// The next chunk of the stream, or `None` at its end. Call [`Chunker::reset`] before a new stream.
    pub fn next_chunk(&mut self, reader: &mut dyn Read) -> io::Result<Option<&[u8]>> {
        if !self.eof && self.len - self.pos < self.params.max as usize {
            self.fill(reader)?;
        }
        let avail = self.len - self.pos;
        if avail == 0 {
            return Ok(None);
        }
        let (_, n) = cut_gear(
            &self.buf[self.pos..self.len],
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        let n = n.clamp(1, avail);
        let start = self.pos;
        self.pos += n;
        Ok(Some(&self.buf[start..start + n]))
    }

    /// Chunk lengths of a whole buffer (tests and golden vectors).
    #[cfg(any(test, feature = "internals"))]
    pub fn chunk_lengths(&mut self, data: &[u8]) -> Vec<usize> {
        self.reset();
        let mut reader = data;
        let mut out = Vec::new();
        while let Ok(Some(chunk)) = self.next_chunk(&mut reader) {
            out.push(chunk.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 256,
            avg: 1024,
            max: 4096,
        }
    }

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    proptest! {
        #[test]
        fn prop_chunks_concatenate_to_input_within_bounds(len in 0usize..200_000, seed in any::<u64>()) {
            let input = data(len, seed);
            let mut c = Chunker::new(small(), 42);
            c.reset();
            let mut reader = &input[..];
            let mut out = Vec::new();
            let mut lens = Vec::new();
            while let Some(chunk) = c.next_chunk(&mut reader).unwrap() {
                out.extend_from_slice(chunk);
                lens.push(chunk.len());
            }
            prop_assert_eq!(&out, &input);
            for (i, l) in lens.iter().enumerate() {
                prop_assert!(*l <= 4096);
                if i + 1 < lens.len() { prop_assert!(*l >= 256); }
            }
        }

        #[test]
        fn prop_boundaries_resynchronise_after_insertion(seed in any::<u64>(), at in 0usize..50_000, insert in proptest::collection::vec(any::<u8>(), 1..100)) {
            let input = data(100_000, seed);
            let mut edited = input[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&input[at..]);
            let mut c = Chunker::new(small(), 7);
            let ends = |lens: Vec<usize>| lens.iter().scan(0usize, |s, l| { *s += l; Some(*s) }).collect::<Vec<_>>();
            let a = ends(c.chunk_lengths(&input));
            let b: std::collections::HashSet<usize> = ends(c.chunk_lengths(&edited)).into_iter().map(|e| e - insert.len().min(e)).collect();
            // Past the edit (plus a few max-size chunks of slack) the cut points coincide again.
            let shared = a.iter().filter(|e| **e > at + 4 * 4096 && b.contains(e)).count();
            let after = a.iter().filter(|e| **e > at + 4 * 4096).count();
            prop_assert!(after == 0 || shared * 10 >= after * 9, "shared {} of {}", shared, after);
        }
    }

    #[test]
    fn seed_changes_boundaries() {
        let input = data(300_000, 1);
        let a = Chunker::new(small(), 1).chunk_lengths(&input);
        let b = Chunker::new(small(), 2).chunk_lengths(&input);
        assert_ne!(a, b);
        assert_eq!(a.iter().sum::<usize>(), input.len());
    }
}
