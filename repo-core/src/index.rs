//! The in-memory master index: where every blob lives.
//!
//! Compact by design (issue: memory must not grow with a HashMap of boxed structs). Data blobs,
//! the vast majority, cost 44 bytes each: ids are kept sorted and split on their first two bytes
//! into 65,536 buckets (a 256 KiB table), so each entry stores only the remaining 30 bytes of the
//! id plus a 14-byte packed location. Tree blobs use a plain 48-byte entry. Pack ids live once in a
//! pack table indexed by position. See `index_costs_at_most_48_bytes_per_blob`.

use crate::format::index::IndexPack;
use crate::format::BlobType;
use crate::id::{BlobId, PackId};

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: PackId,
    /// Offset of its envelope in the pack.
    pub offset: u32,
    /// Length of its envelope.
    pub stored_len: u32,
    /// Length of its plaintext.
    pub raw_len: u32,
}

const BUCKETS: usize = 1 << 16;
/// Largest data blob envelope or plaintext a packed location holds (25 bits).
const MAX_PACKED_LEN: u32 = (1 << 25) - 1;

#[derive(Clone, Copy)]
struct DataEntry {
    suffix: [u8; 30],
    loc: [u8; 14],
}

#[derive(Clone, Copy)]
struct TreeEntry {
    id: [u8; 32],
    pack: u32,
    offset: u32,
    stored_len: u32,
    raw_len: u32,
}

/// Packs pack index (31 bits), offset (31 bits), stored length (25 bits) and raw length (25 bits).
fn pack_loc(pack: u32, offset: u32, stored_len: u32, raw_len: u32) -> [u8; 14] {
    let mut out = [0u8; 14];
    out[0..4].copy_from_slice(&(pack | ((raw_len >> 24) << 31)).to_le_bytes());
    out[4..8].copy_from_slice(&(offset | ((stored_len >> 24) << 31)).to_le_bytes());
    out[8..11].copy_from_slice(&stored_len.to_le_bytes()[..3]);
    out[11..14].copy_from_slice(&raw_len.to_le_bytes()[..3]);
    out
}

fn unpack_loc(loc: &[u8; 14]) -> (u32, u32, u32, u32) {
    let w0 = u32::from_le_bytes([loc[0], loc[1], loc[2], loc[3]]);
    let w1 = u32::from_le_bytes([loc[4], loc[5], loc[6], loc[7]]);
    let stored = u32::from_le_bytes([loc[8], loc[9], loc[10], 0]) | ((w1 >> 31) << 24);
    let raw = u32::from_le_bytes([loc[11], loc[12], loc[13], 0]) | ((w0 >> 31) << 24);
    (w0 & 0x7fff_ffff, w1 & 0x7fff_ffff, stored, raw)
}

/// Summary of one pack known to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    /// The pack id.
    pub id: PackId,
    /// Length of the pack file.
    pub size: u64,
}

/// Blob id → location, for every blob of the loaded index files.
#[derive(Default)]
pub struct MasterIndex {
    buckets: Vec<u32>,
    data: Vec<DataEntry>,
    trees: Vec<TreeEntry>,
    packs: Vec<PackInfo>,
}

/// Collects index packs before sorting them into a [`MasterIndex`].
#[derive(Default)]
pub struct MasterIndexBuilder {
    data: Vec<([u8; 32], [u8; 14])>,
    trees: Vec<TreeEntry>,
    packs: Vec<PackInfo>,
    pack_pos: std::collections::HashMap<PackId, u32>,
}

impl MasterIndexBuilder {
    /// Adds the blobs of one pack. Entries a packed location cannot hold are refused.
    pub fn add_pack(&mut self, pack: &IndexPack) -> Result<(), String> {
        let pack_idx = match self.pack_pos.get(&pack.id) {
            Some(i) => *i,
            None => {
                let i = u32::try_from(self.packs.len())
                    .ok()
                    .filter(|i| *i < 0x8000_0000)
                    .ok_or("too many packs")?;
                self.packs.push(PackInfo {
                    id: pack.id,
                    size: pack.size,
                });
                let _ = self.pack_pos.insert(pack.id, i);
                i
            }
        };
        for b in &pack.blobs {
            if b.offset >= 0x8000_0000 {
                return Err(format!("blob {} offset {} beyond 2 GiB", b.id, b.offset));
            }
            match b.blob_type {
                BlobType::Data => {
                    if b.stored_len > MAX_PACKED_LEN || b.raw_len > MAX_PACKED_LEN {
                        return Err(format!("data blob {} is larger than any chunk", b.id));
                    }
                    self.data.push((
                        *b.id.as_bytes(),
                        pack_loc(pack_idx, b.offset, b.stored_len, b.raw_len),
                    ));
                }
                BlobType::Tree => self.trees.push(TreeEntry {
                    id: *b.id.as_bytes(),
                    pack: pack_idx,
                    offset: b.offset,
                    stored_len: b.stored_len,
                    raw_len: b.raw_len,
                }),
            }
        }
        Ok(())
    }

    /// Sorts and compacts. A blob stored in several packs keeps one location.
    pub fn build(mut self) -> MasterIndex {
        self.data.sort_unstable_by_key(|a| a.0);
        self.data.dedup_by(|a, b| a.0 == b.0);
        self.trees.sort_unstable_by_key(|a| a.id);
        self.trees.dedup_by(|a, b| a.id == b.id);
        let mut buckets = vec![0u32; BUCKETS + 1];
        let mut data = Vec::with_capacity(self.data.len());
        for (id, loc) in &self.data {
            buckets[usize::from(u16::from_be_bytes([id[0], id[1]])) + 1] += 1;
            let mut suffix = [0u8; 30];
            suffix.copy_from_slice(&id[2..]);
            data.push(DataEntry { suffix, loc: *loc });
        }
        for i in 1..=BUCKETS {
            buckets[i] += buckets[i - 1];
        }
        drop(self.data);
        self.trees.shrink_to_fit();
        self.packs.shrink_to_fit();
        MasterIndex {
            buckets,
            data,
            trees: self.trees,
            packs: self.packs,
        }
    }
}

impl MasterIndex {
    /// A builder.
    pub fn builder() -> MasterIndexBuilder {
        MasterIndexBuilder::default()
    }

    /// Where blob `id` of `blob_type` is stored.
    pub fn lookup(&self, blob_type: BlobType, id: &BlobId) -> Option<BlobLocation> {
        let id = id.as_bytes();
        match blob_type {
            BlobType::Data => {
                if self.data.is_empty() {
                    return None;
                }
                let b = usize::from(u16::from_be_bytes([id[0], id[1]]));
                let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
                let slice = &self.data[lo..hi];
                let i = slice
                    .binary_search_by(|e| e.suffix[..].cmp(&id[2..]))
                    .ok()?;
                let (pack, offset, stored_len, raw_len) = unpack_loc(&slice[i].loc);
                Some(BlobLocation {
                    pack: self.packs[pack as usize].id,
                    offset,
                    stored_len,
                    raw_len,
                })
            }
            BlobType::Tree => {
                let i = self.trees.binary_search_by(|e| e.id.cmp(id)).ok()?;
                let e = &self.trees[i];
                Some(BlobLocation {
                    pack: self.packs[e.pack as usize].id,
                    offset: e.offset,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                })
            }
        }
    }

    /// Whether the index knows the blob.
    pub fn contains(&self, blob_type: BlobType, id: &BlobId) -> bool {
        self.lookup(blob_type, id).is_some()
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.data.len() + self.trees.len()
    }

    /// True when no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// Every blob with its type and location, data blobs in id order, then tree blobs.
    pub fn iter(&self) -> impl Iterator<Item = (BlobType, BlobId, BlobLocation)> + '_ {
        let data = (0..BUCKETS).flat_map(move |b| {
            let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
            let prefix = (b as u16).to_be_bytes();
            self.data[lo..hi].iter().map(move |e| {
                let mut id = [0u8; 32];
                id[..2].copy_from_slice(&prefix);
                id[2..].copy_from_slice(&e.suffix);
                let (pack, offset, stored_len, raw_len) = unpack_loc(&e.loc);
                (
                    BlobType::Data,
                    BlobId::from(id),
                    BlobLocation {
                        pack: self.packs[pack as usize].id,
                        offset,
                        stored_len,
                        raw_len,
                    },
                )
            })
        });
        let data = if self.data.is_empty() {
            None
        } else {
            Some(data)
        };
        let trees = self.trees.iter().map(move |e| {
            (
                BlobType::Tree,
                BlobId::from(e.id),
                BlobLocation {
                    pack: self.packs[e.pack as usize].id,
                    offset: e.offset,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                },
            )
        });
        data.into_iter().flatten().chain(trees)
    }

    /// Heap bytes held by the index (for the memory test and `stats`).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * 4
            + self.data.capacity() * std::mem::size_of::<DataEntry>()
            + self.trees.capacity() * std::mem::size_of::<TreeEntry>()
            + self.packs.capacity() * std::mem::size_of::<PackInfo>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexBlob;

    fn id(n: u64) -> BlobId {
        BlobId::from(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn packed_location_roundtrips_at_the_limits() {
        for (p, o, s, r) in [
            (0, 0, 0, 0),
            (0x7fff_ffff, 0x7fff_ffff, MAX_PACKED_LEN, MAX_PACKED_LEN),
            (5, 77, 1 << 24, (1 << 24) + 3),
        ] {
            assert_eq!(unpack_loc(&pack_loc(p, o, s, r)), (p, o, s, r));
        }
    }

    #[test]
    fn lookup_finds_every_blob_and_nothing_else() {
        let mut b = MasterIndex::builder();
        for p in 0..50u64 {
            let blobs = (0..40u64)
                .map(|i| IndexBlob {
                    blob_type: if i % 10 == 0 {
                        BlobType::Tree
                    } else {
                        BlobType::Data
                    },
                    id: id(p * 1000 + i),
                    offset: (i * 100) as u32,
                    stored_len: 100,
                    raw_len: 90 + i as u32,
                })
                .collect();
            b.add_pack(&IndexPack {
                id: PackId::from([p as u8; 32]),
                size: 4000,
                blobs,
            })
            .unwrap();
        }
        let idx = b.build();
        assert_eq!(idx.len(), 2000);
        let loc = idx.lookup(BlobType::Data, &id(7 * 1000 + 3)).unwrap();
        assert_eq!(
            loc,
            BlobLocation {
                pack: PackId::from([7; 32]),
                offset: 300,
                stored_len: 100,
                raw_len: 93
            }
        );
        assert!(idx.lookup(BlobType::Tree, &id(7 * 1000 + 3)).is_none());
        assert!(idx.lookup(BlobType::Tree, &id(7 * 1000 + 10)).is_some());
        assert!(idx.lookup(BlobType::Data, &id(999_999)).is_none());
        assert_eq!(idx.iter().count(), 2000);
        assert!(idx.iter().all(|(t, i, l)| idx.lookup(t, &i) == Some(l)));
    }

    #[test]
    fn index_costs_at_most_48_bytes_per_blob() {
        // One million data blobs in packs of 16 blobs each (16 MiB packs of 1 MiB chunks: the
        // fewest blobs per pack, hence the largest share of the pack table, of the defaults).
        let n_blobs = 1_000_000u64;
        let mut b = MasterIndex::builder();
        for p in 0..n_blobs / 16 {
            let blobs = (0..16u64)
                .map(|i| IndexBlob {
                    blob_type: BlobType::Data,
                    id: id(p * 16 + i),
                    offset: (i << 20) as u32,
                    stored_len: 1 << 20,
                    raw_len: 1 << 20,
                })
                .collect();
            let mut pid = [0u8; 32];
            pid[..8].copy_from_slice(&p.to_le_bytes());
            b.add_pack(&IndexPack {
                id: PackId::from(pid),
                size: 16 << 20,
                blobs,
            })
            .unwrap();
        }
        let idx = b.build();
        assert_eq!(idx.len(), n_blobs as usize);
        let per_blob = idx.heap_bytes() as f64 / n_blobs as f64;
        assert!(per_blob <= 48.0, "index costs {per_blob:.2} bytes per blob");
        assert!(idx.contains(BlobType::Data, &id(123_456)));
    }
}
