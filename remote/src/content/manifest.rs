//! Manifests: a file version's content as an ordered list of chunks, plus its
//! size and whole-file hash; and finding the chunks behind a byte range.

use bytes::Bytes;

use super::chunker::{Chunk, FileDigest, chunk_boundaries};
use super::{ChunkId, ContentError, MAX_CHUNK};
use crate::proto;

/// One chunk of a file version: its id and plaintext length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's plaintext.
    pub id: ChunkId,
    /// Plaintext length, in `1..=MAX_CHUNK`.
    pub length: u32,
}

/// A file version's content: its chunks in order, its size and its BLAKE3.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The chunks, in file order.
    pub chunks: Vec<ChunkRef>,
    /// File size: the sum of the chunk lengths.
    pub size: u64,
    /// BLAKE3 of the whole file.
    pub content_hash: [u8; 32],
}

/// Checks a chunk length and narrows it to the manifest's `u32`.
fn chunk_length(index: usize, length: u64) -> Result<u32, ContentError> {
    if length == 0 {
        return Err(ContentError::InvalidManifest(format!(
            "chunk {index} is empty"
        )));
    }
    if length > MAX_CHUNK as u64 {
        return Err(ContentError::InvalidManifest(format!(
            "chunk {index} is {length} bytes, more than the maximum of {MAX_CHUNK}"
        )));
    }
    // In range: MAX_CHUNK fits in a u32.
    Ok(length as u32)
}

impl Manifest {
    /// The manifest of an in-memory file (for tests and small files).
    pub fn of_bytes(data: &[u8]) -> Manifest {
        let chunks = chunk_boundaries(data)
            .into_iter()
            .map(|(offset, len)| ChunkRef {
                id: ChunkId::of(&data[offset..offset + len]),
                // The chunker never cuts more than MAX_CHUNK, which fits in a u32.
                length: len as u32,
            })
            .collect();
        let digest = FileDigest::of(data);
        Manifest {
            chunks,
            size: digest.size,
            content_hash: digest.content_hash,
        }
    }

    /// Checks the rules every manifest obeys: each chunk length is in
    /// `1..=MAX_CHUNK`, the lengths add up to `size`, and a file is empty exactly
    /// when it has no chunks. (The hashes can only be checked against the data.)
    pub fn validate(&self) -> Result<(), ContentError> {
        if self.chunks.is_empty() != (self.size == 0) {
            return Err(ContentError::InvalidManifest(format!(
                "{} chunks for a file of {} bytes",
                self.chunks.len(),
                self.size
            )));
        }
        let mut total: u64 = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            chunk_length(i, chunk.length.into())?;
            total = total
                .checked_add(chunk.length.into())
                .ok_or_else(|| ContentError::InvalidManifest("size overflows".into()))?;
        }
        if total != self.size {
            return Err(ContentError::InvalidManifest(format!(
                "chunks add up to {total} bytes, manifest says {}",
                self.size
            )));
        }
        Ok(())
    }

    /// The size and whole-file hash.
    pub fn digest(&self) -> FileDigest {
        FileDigest {
            size: self.size,
            content_hash: self.content_hash,
        }
    }

    /// The chunks holding bytes `offset..offset + len`, in order, as
    /// `(chunk index, chunk start offset in the file, chunk)`. Empty for an empty
    /// range or one starting at or past the end; a range running past the end is
    /// cut at the end.
    ///
    /// This adds up the chunk lengths on each call; for many lookups in one
    /// manifest, build a [`ChunkIndex`] once.
    pub fn chunks_covering(&self, offset: u64, len: u64) -> Covering<'_> {
        ChunkIndex::new(self).covering(self, offset, len)
    }
}

/// Cumulative chunk offsets of a [`Manifest`], to find the chunks behind a byte
/// range by binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkIndex {
    /// `ends[i]`: the file offset just past chunk `i`.
    ends: Vec<u64>,
}

impl ChunkIndex {
    /// Indexes `manifest`'s chunks.
    pub fn new(manifest: &Manifest) -> ChunkIndex {
        let mut end = 0u64;
        let ends = manifest
            .chunks
            .iter()
            .map(|c| {
                end = end.saturating_add(c.length.into());
                end
            })
            .collect();
        ChunkIndex { ends }
    }

    /// Where chunk `index` starts in the file.
    pub fn start_of(&self, index: usize) -> Option<u64> {
        if index >= self.ends.len() {
            return None;
        }
        Some(match index {
            0 => 0,
            _ => self.ends[index - 1],
        })
    }

    /// Like [`Manifest::chunks_covering`], in O(log n) to find the first chunk.
    /// `manifest` must be the one this index was built from.
    pub fn covering<'m>(&self, manifest: &'m Manifest, offset: u64, len: u64) -> Covering<'m> {
        // A mismatched manifest must not panic: only look at chunks both know.
        let known = if len == 0 {
            0
        } else {
            self.ends.len().min(manifest.chunks.len())
        };
        let ends = &self.ends[..known];
        let first = ends.partition_point(|&end| end <= offset);
        let start = if first == 0 { 0 } else { ends[first - 1] };
        Covering {
            chunks: &manifest.chunks[..known],
            next: first,
            start,
            end: offset.saturating_add(len),
        }
    }
}

/// Iterator over the chunks covering a byte range; see
/// [`Manifest::chunks_covering`].
#[derive(Clone, Debug)]
pub struct Covering<'m> {
    chunks: &'m [ChunkRef],
    next: usize,
    /// File offset of `chunks[next]`.
    start: u64,
    /// End of the range (exclusive).
    end: u64,
}

impl<'m> Iterator for Covering<'m> {
    type Item = (usize, u64, &'m ChunkRef);

    fn next(&mut self) -> Option<Self::Item> {
        if self.start >= self.end {
            return None;
        }
        let chunk = self.chunks.get(self.next)?;
        let item = (self.next, self.start, chunk);
        self.next += 1;
        self.start = self.start.saturating_add(chunk.length.into());
        Some(item)
    }
}

/// Builds a [`Manifest`] chunk by chunk, e.g. while a [`super::Chunker`] runs.
#[derive(Clone, Debug, Default)]
pub struct ManifestBuilder {
    chunks: Vec<ChunkRef>,
    size: u64,
}

impl ManifestBuilder {
    /// An empty builder.
    pub fn new() -> ManifestBuilder {
        ManifestBuilder::default()
    }

    /// Appends a chunk of `length` plaintext bytes.
    pub fn push(&mut self, id: ChunkId, length: usize) -> Result<(), ContentError> {
        let length = chunk_length(self.chunks.len(), length as u64)?;
        self.chunks.push(ChunkRef { id, length });
        self.size += u64::from(length);
        Ok(())
    }

    /// Appends a chunk from the chunker.
    pub fn push_chunk(&mut self, chunk: &Chunk) -> Result<(), ContentError> {
        self.push(chunk.id, chunk.data.len())
    }

    /// Bytes covered so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The manifest, given the whole file's digest, whose size must match the
    /// chunks pushed.
    pub fn finish(self, digest: FileDigest) -> Result<Manifest, ContentError> {
        let manifest = Manifest {
            chunks: self.chunks,
            size: self.size,
            content_hash: digest.content_hash,
        };
        if digest.size != self.size {
            return Err(ContentError::InvalidManifest(format!(
                "chunks add up to {} bytes, file is {}",
                self.size, digest.size
            )));
        }
        manifest.validate()?;
        Ok(manifest)
    }
}

impl From<&ChunkRef> for proto::ChunkRef {
    fn from(chunk: &ChunkRef) -> proto::ChunkRef {
        proto::ChunkRef {
            id: Bytes::copy_from_slice(chunk.id.as_bytes()),
            length: chunk.length,
        }
    }
}

impl TryFrom<proto::ChunkRef> for ChunkRef {
    type Error = ContentError;

    /// Checks the id's length; the chunk length is checked by
    /// [`Manifest::validate`].
    fn try_from(chunk: proto::ChunkRef) -> Result<ChunkRef, ContentError> {
        Ok(ChunkRef {
            id: ChunkId::from_slice(&chunk.id)?,
            length: chunk.length,
        })
    }
}

impl From<&Manifest> for proto::Manifest {
    fn from(manifest: &Manifest) -> proto::Manifest {
        proto::Manifest {
            chunks: manifest.chunks.iter().map(proto::ChunkRef::from).collect(),
            size: manifest.size,
            content_hash: Bytes::copy_from_slice(&manifest.content_hash),
        }
    }
}

impl TryFrom<proto::Manifest> for Manifest {
    type Error = ContentError;

    /// Converts and [validates](Manifest::validate) a manifest from the wire.
    fn try_from(manifest: proto::Manifest) -> Result<Manifest, ContentError> {
        let content_hash = <[u8; 32]>::try_from(&manifest.content_hash[..]).map_err(|_| {
            ContentError::InvalidManifest(format!(
                "content hash is {} bytes, not 32",
                manifest.content_hash.len()
            ))
        })?;
        let chunks = manifest
            .chunks
            .into_iter()
            .map(ChunkRef::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let manifest = Manifest {
            chunks,
            size: manifest.size,
            content_hash,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::chunker::tests::random_bytes;
    use super::super::{Chunker, MIN_CHUNK};
    use super::*;

    fn invalid(manifest: &Manifest) -> String {
        match manifest.validate() {
            Err(ContentError::InvalidManifest(reason)) => reason,
            other => panic!("expected an invalid manifest, got {other:?}"),
        }
    }

    /// A manifest with chunks of the given lengths (ids made up).
    fn with_lengths(lengths: &[u32]) -> Manifest {
        Manifest {
            chunks: lengths
                .iter()
                .enumerate()
                .map(|(i, &length)| ChunkRef {
                    id: ChunkId::of(&i.to_le_bytes()),
                    length,
                })
                .collect(),
            size: lengths.iter().map(|&l| u64::from(l)).sum(),
            content_hash: [7; 32],
        }
    }

    fn covering(m: &Manifest, offset: u64, len: u64) -> Vec<(usize, u64)> {
        let got: Vec<(usize, u64)> = m
            .chunks_covering(offset, len)
            .map(|(i, start, _)| (i, start))
            .collect();
        let index = ChunkIndex::new(m);
        let again: Vec<(usize, u64)> = index
            .covering(m, offset, len)
            .map(|(i, start, _)| (i, start))
            .collect();
        assert_eq!(got, again);
        got
    }

    #[test]
    fn of_bytes_empty() {
        let m = Manifest::of_bytes(&[]);
        assert!(m.chunks.is_empty());
        assert_eq!(m.size, 0);
        assert_eq!(&m.content_hash, blake3::hash(&[]).as_bytes());
        m.validate().unwrap();
    }

    #[test]
    fn of_bytes_matches_chunker_and_builder() {
        let data = random_bytes(20, 9 * 1024 * 1024 + 17);
        let m = Manifest::of_bytes(&data);
        m.validate().unwrap();
        assert!(m.chunks.len() > 2);
        assert_eq!(m.size, data.len() as u64);
        assert_eq!(&m.content_hash, blake3::hash(&data).as_bytes());

        let mut chunker = Chunker::new(&data[..]);
        let mut builder = ManifestBuilder::new();
        for chunk in chunker.by_ref() {
            builder.push_chunk(&chunk.unwrap()).unwrap();
        }
        assert_eq!(builder.size(), data.len() as u64);
        assert_eq!(builder.finish(chunker.finish()).unwrap(), m);
    }

    #[test]
    fn builder_rejects_bad_input() {
        let id = ChunkId::of(b"x");
        let mut b = ManifestBuilder::new();
        assert!(b.push(id, 0).is_err());
        assert!(b.push(id, MAX_CHUNK + 1).is_err());
        b.push(id, MAX_CHUNK).unwrap();
        b.push(id, 1).unwrap();
        let wrong = FileDigest {
            size: 5,
            content_hash: [0; 32],
        };
        assert!(matches!(
            b.clone().finish(wrong),
            Err(ContentError::InvalidManifest(_))
        ));
        let right = FileDigest {
            size: MAX_CHUNK as u64 + 1,
            content_hash: [1; 32],
        };
        let m = b.finish(right).unwrap();
        assert_eq!(m.digest(), right);
    }

    #[test]
    fn validate_rejects_broken_manifests() {
        with_lengths(&[5, MAX_CHUNK as u32, 1]).validate().unwrap();

        let mut m = with_lengths(&[5, 6]);
        m.size = 12;
        assert!(invalid(&m).contains("add up"));
        m.size = 10;
        assert!(invalid(&m).contains("add up"));

        let m = with_lengths(&[5, 0, 6]);
        assert!(invalid(&m).contains("chunk 1 is empty"));

        let m = with_lengths(&[MAX_CHUNK as u32 + 1]);
        assert!(invalid(&m).contains("maximum"));

        let mut m = with_lengths(&[]);
        m.size = 3;
        assert!(invalid(&m).contains("0 chunks"));

        let mut m = with_lengths(&[3]);
        m.size = 0;
        assert!(invalid(&m).contains("1 chunks"));
    }

    #[test]
    fn proto_round_trip() {
        let data = random_bytes(21, 3 * MIN_CHUNK + 99);
        for m in [
            Manifest::of_bytes(&data),
            Manifest::of_bytes(&[]),
            Manifest::of_bytes(b"hi"),
        ] {
            let wire = proto::Manifest::from(&m);
            assert_eq!(wire.chunks.len(), m.chunks.len());
            let bytes = wire.encode_to_vec();
            let decoded = proto::Manifest::decode(&bytes[..]).unwrap();
            assert_eq!(Manifest::try_from(decoded).unwrap(), m);
        }
    }

    #[test]
    fn proto_conversion_validates() {
        let good = proto::Manifest::from(&with_lengths(&[10, 20]));

        let mut bad = good.clone();
        bad.chunks[1].id = Bytes::from_static(&[1; 31]);
        assert!(matches!(
            Manifest::try_from(bad),
            Err(ContentError::BadIdLength(31))
        ));

        let mut bad = good.clone();
        bad.content_hash = Bytes::new();
        assert!(matches!(
            Manifest::try_from(bad),
            Err(ContentError::InvalidManifest(_))
        ));

        let mut bad = good.clone();
        bad.chunks[0].length = 0;
        bad.size = 20;
        assert!(matches!(
            Manifest::try_from(bad),
            Err(ContentError::InvalidManifest(_))
        ));

        let mut bad = good.clone();
        bad.chunks[0].length = MAX_CHUNK as u32 + 1;
        bad.size = MAX_CHUNK as u64 + 21;
        assert!(matches!(
            Manifest::try_from(bad),
            Err(ContentError::InvalidManifest(_))
        ));

        let mut bad = good.clone();
        bad.size += 1;
        assert!(matches!(
            Manifest::try_from(bad),
            Err(ContentError::InvalidManifest(_))
        ));

        Manifest::try_from(good).unwrap();
    }

    #[test]
    fn chunks_covering_edges() {
        // Chunks: [0, 10) [10, 30) [30, 60)
        let m = with_lengths(&[10, 20, 30]);
        assert_eq!(covering(&m, 0, 1), vec![(0, 0)]);
        assert_eq!(covering(&m, 0, 10), vec![(0, 0)]);
        assert_eq!(covering(&m, 59, 1), vec![(2, 30)]);
        assert_eq!(covering(&m, 9, 2), vec![(0, 0), (1, 10)]);
        assert_eq!(covering(&m, 10, 20), vec![(1, 10)]);
        assert_eq!(covering(&m, 5, 50), vec![(0, 0), (1, 10), (2, 30)]);
        assert_eq!(covering(&m, 0, 60), vec![(0, 0), (1, 10), (2, 30)]);
        // Past the end: cut at the end, or nothing at all.
        assert_eq!(covering(&m, 29, u64::MAX), vec![(1, 10), (2, 30)]);
        assert_eq!(covering(&m, 60, 1), vec![]);
        assert_eq!(covering(&m, u64::MAX, u64::MAX), vec![]);
        // Empty ranges cover nothing, wherever they are.
        for offset in [0, 10, 15, 59, 60] {
            assert_eq!(covering(&m, offset, 0), vec![], "offset {offset}");
        }
        assert_eq!(covering(&Manifest::default(), 0, 10), vec![]);
        // The item's chunk is the manifest's.
        let (_, _, chunk) = m.chunks_covering(45, 1).next().unwrap();
        assert_eq!(*chunk, m.chunks[2]);
    }

    #[test]
    fn chunks_covering_matches_brute_force() {
        let m = with_lengths(&[3, 1, 4, 1, 5, 9, 2, 6]);
        let starts: Vec<u64> = m
            .chunks
            .iter()
            .scan(0u64, |pos, c| {
                let start = *pos;
                *pos += u64::from(c.length);
                Some(start)
            })
            .collect();
        let index = ChunkIndex::new(&m);
        for (i, &start) in starts.iter().enumerate() {
            assert_eq!(index.start_of(i), Some(start));
        }
        assert_eq!(index.start_of(starts.len()), None);
        for offset in 0..=m.size + 1 {
            for len in 0..=m.size + 1 {
                let expected: Vec<(usize, u64)> = starts
                    .iter()
                    .enumerate()
                    .filter(|&(i, &start)| {
                        let end = start + u64::from(m.chunks[i].length);
                        len > 0 && start < offset + len && offset < end
                    })
                    .map(|(i, &start)| (i, start))
                    .collect();
                assert_eq!(covering(&m, offset, len), expected, "{offset}+{len}");
            }
        }
    }
}
