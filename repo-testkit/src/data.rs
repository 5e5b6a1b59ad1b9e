//! The deterministic data generators of the tests, so test data does not compress away and a
//! seed replays a run: [`noise`] for bulk bytes (BLAKE3 in XOF mode, gigabytes a second) and
//! [`Xorshift`] for a stream of decisions (which file, what size, which byte to flip).

/// A xorshift64 pseudo-random stream. Not for anything but test data.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// The stream of `seed` (any value; zero is made odd, as xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` bytes, one from each step of the stream.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next_u64() >> 24) as u8).collect()
    }
}

/// `len` deterministic pseudo-random bytes of `seed` (BLAKE3 of the seed in XOF mode). A
/// shorter request gives a prefix of a longer one with the same seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_deterministic_and_seeds_differ() {
        assert_eq!(noise(1000, 7), noise(1000, 7));
        assert_ne!(noise(1000, 7), noise(1000, 8));
        assert_eq!(noise(10, 7), noise(1000, 7)[..10]);
        assert_eq!(noise(0, 7), Vec::<u8>::new());
        let mut r = Xorshift::new(0);
        assert!((0..100).all(|_| r.below(6) < 6));
        assert_eq!(r.below(0), 0);
    }
}
