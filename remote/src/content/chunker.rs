//! Content-defined chunking: cutting a file into chunks whose boundaries depend on
//! the bytes around them, not on their position, so that an insertion or deletion
//! only changes the chunks it touches.

use std::fmt;
use std::io::{self, Read};
use std::iter::FusedIterator;

use fastcdc::v2020;

use super::{AVG_CHUNK, ChunkId, ContentError, MAX_CHUNK, MIN_CHUNK};

/// How much file data the streaming chunker holds at once. A cut needs a window
/// of MAX_CHUNK bytes; the rest is slack so that moving the unconsumed tail to the
/// front of the buffer (a memcpy) happens once per few chunks rather than once per
/// chunk, and so that each read asks the reader for at least MAX_CHUNK bytes. More
/// slack saves little of that memcpy and raises the upload's peak memory (a
/// 1 GiB upload peaked about 20 MiB higher with three windows and queues of four).
const BUF_CAP: usize = 2 * MAX_CHUNK;

/// The first read asks for this much only, so that chunking a small file does
/// not allocate the whole buffer.
const FIRST_READ: usize = 64 * 1024;

/// One chunk of a file.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    /// BLAKE3 of `data`.
    pub id: ChunkId,
    /// Where the chunk starts in the file.
    pub offset: u64,
    /// The chunk's plaintext.
    pub data: Vec<u8>,
}

impl fmt::Debug for Chunk {
    /// Leaves the bytes out: a chunk is up to 4 MiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("id", &self.id)
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Size and whole-file BLAKE3 of a file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileDigest {
    /// Length in bytes.
    pub size: u64,
    /// BLAKE3 of the whole content.
    pub content_hash: [u8; 32],
}

impl FileDigest {
    /// The digest of an in-memory buffer.
    pub fn of(data: &[u8]) -> FileDigest {
        FileDigest {
            size: data.len() as u64,
            content_hash: *blake3::hash(data).as_bytes(),
        }
    }
}

/// FastCDC's two masks for our average size, at normalisation level 1: the
/// crate's default, so `v2020::FastCDC::new` cuts exactly where we do.
fn masks() -> (u64, u64) {
    v2020::select_masks(AVG_CHUNK, v2020::Normalization::Level1)
}

/// Length of the chunk starting at `window[0]`. `window` must hold at least
/// `MAX_CHUNK` bytes unless it is the rest of the file: the cut never looks
/// further than `MAX_CHUNK`, which is what lets streaming and in-memory chunking
/// agree. A window of at most `MIN_CHUNK` bytes is one chunk.
fn next_cut(window: &[u8], (mask_s, mask_l): (u64, u64)) -> usize {
    let (_, len) = v2020::cut(
        window,
        MIN_CHUNK,
        AVG_CHUNK,
        MAX_CHUNK,
        mask_s,
        mask_l,
        mask_s << 1,
        mask_l << 1,
    );
    len
}

/// Chunk boundaries of an in-memory buffer, as `(offset, length)` pairs; the same
/// boundaries [`Chunker`] finds in the same bytes.
pub fn chunk_boundaries(data: &[u8]) -> Vec<(usize, usize)> {
    let masks = masks();
    let mut out = Vec::with_capacity(data.len() / AVG_CHUNK + 1);
    let mut pos = 0;
    while pos < data.len() {
        let len = next_cut(&data[pos..], masks);
        out.push((pos, len));
        pos += len;
    }
    out
}

/// Streams a reader's bytes as [`Chunk`]s, holding at most a few `MAX_CHUNK`s in
/// memory whatever the file size, and hashes the whole file on the way: a [`Cutter`]
/// and a [`ChunkHasher`] on one thread.
///
/// Iteration stops after the first error. Once it has ended, [`Chunker::finish`]
/// gives the file's [`FileDigest`].
pub struct Chunker<R: Read> {
    cutter: Cutter<R>,
    /// Fed with each chunk as it is yielded, so the digest always describes
    /// exactly the chunks handed out.
    hasher: ChunkHasher,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader`, which is read to its end.
    pub fn new(reader: R) -> Self {
        Chunker {
            cutter: Cutter::new(reader),
            hasher: ChunkHasher::new(),
        }
    }

    /// Digest of the bytes chunked so far: the whole file once iteration has
    /// returned `None`.
    pub fn digest(&self) -> FileDigest {
        self.hasher.digest()
    }

    /// Ends chunking and returns the digest of the chunks yielded (see
    /// [`Chunker::digest`]).
    pub fn finish(self) -> FileDigest {
        self.digest()
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = Result<Chunk, ContentError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.cutter.next()?.map(|cut| self.hasher.hash(cut)))
    }
}

// Once it has returned `None` (after the end or an error), it keeps doing so.
impl<R: Read> FusedIterator for Chunker<R> {}

/// A chunk cut but not yet hashed.
pub struct Cut {
    /// Where the chunk starts in the file.
    pub offset: u64,
    /// The chunk's plaintext.
    pub data: Vec<u8>,
}

/// The cutting half of a [`Chunker`]: yields the file's chunks in order without
/// hashing them, so that a pipeline can hash them on another thread (cutting and
/// hashing each take about as long).
///
/// Iteration stops after the first error.
pub struct Cutter<R: Read> {
    reader: R,
    /// Data read but not yet cut is `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// File offset of `buf[pos]`.
    offset: u64,
    eof: bool,
    done: bool,
    masks: (u64, u64),
}

impl<R: Read> Cutter<R> {
    /// A cutter over `reader`, which is read to its end.
    pub fn new(reader: R) -> Self {
        Cutter {
            reader,
            buf: Vec::new(),
            pos: 0,
            offset: 0,
            eof: false,
            done: false,
            masks: masks(),
        }
    }

    /// Makes sure `buf[pos..]` holds a full cut window, or the rest of the file.
    fn fill(&mut self) -> io::Result<()> {
        if self.eof || self.buf.len() - self.pos >= MAX_CHUNK {
            return Ok(());
        }
        if self.buf.capacity() == 0 {
            // Most files are small: do not set up the full buffer for them.
            self.read_up_to(FIRST_READ)?;
            if self.eof {
                return Ok(());
            }
        }
        // The tail is shorter than MAX_CHUNK, and the read below brings in at least
        // as much: a memcpy, cheap next to reading and hashing those bytes.
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.read_up_to(BUF_CAP)
    }

    /// Reads until `buf` holds `cap` bytes or the reader is exhausted.
    fn read_up_to(&mut self, cap: usize) -> io::Result<()> {
        let room = cap.saturating_sub(self.buf.len());
        self.buf.reserve_exact(room);
        // `read_to_end` on `take` reads straight into the spare capacity (without
        // zeroing it for readers that support that) and retries `Interrupted`.
        let n = (&mut self.reader)
            .take(room as u64)
            .read_to_end(&mut self.buf)?;
        if n < room {
            self.eof = true;
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Cutter<R> {
    type Item = Result<Cut, ContentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Err(e) = self.fill() {
            self.done = true;
            return Some(Err(e.into()));
        }
        let window = &self.buf[self.pos..];
        if window.is_empty() {
            self.done = true;
            self.buf = Vec::new();
            return None;
        }
        let len = next_cut(window, self.masks);
        let cut = Cut {
            offset: self.offset,
            data: window[..len].to_vec(),
        };
        self.pos += len;
        self.offset += len as u64;
        Some(Ok(cut))
    }
}

// Once it has returned `None` (after the end or an error), it keeps doing so.
impl<R: Read> FusedIterator for Cutter<R> {}

/// The hashing half of a [`Chunker`]: gives each [`Cut`], taken in file order, its
/// chunk id, and keeps the whole file's digest.
pub struct ChunkHasher {
    hasher: blake3::Hasher,
    size: u64,
}

impl Default for ChunkHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkHasher {
    pub fn new() -> Self {
        ChunkHasher {
            hasher: blake3::Hasher::new(),
            size: 0,
        }
    }

    /// The chunk `cut` is: the next one of the file.
    pub fn hash(&mut self, cut: Cut) -> Chunk {
        self.hasher.update(&cut.data);
        self.size += cut.data.len() as u64;
        Chunk {
            id: ChunkId::of(&cut.data),
            offset: cut.offset,
            data: cut.data,
        }
    }

    /// Size and whole-content BLAKE3 of the chunks hashed so far.
    pub fn digest(&self) -> FileDigest {
        FileDigest {
            size: self.size,
            content_hash: *self.hasher.finalize().as_bytes(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    use super::*;

    const MIB: usize = 1024 * 1024;

    pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        data
    }

    /// Generates `remaining` pseudo-random bytes on demand, so a large "file"
    /// costs no memory.
    struct LazyRandom {
        rng: StdRng,
        remaining: u64,
    }

    impl Read for LazyRandom {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.remaining as usize);
            self.rng.fill_bytes(&mut buf[..n]);
            self.remaining -= n as u64;
            Ok(n)
        }
    }

    /// Hands out data in small, odd-sized reads, like a pipe or a socket.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Yields `good` bytes then fails.
    struct Failing {
        good: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.good);
            buf[..n].fill(7);
            self.good -= n;
            Ok(n)
        }
    }

    fn ids(data: &[u8]) -> Vec<ChunkId> {
        chunk_boundaries(data)
            .into_iter()
            .map(|(off, len)| ChunkId::of(&data[off..off + len]))
            .collect()
    }

    fn chunk_all<R: Read>(reader: R) -> (Vec<Chunk>, FileDigest) {
        let mut chunker = Chunker::new(reader);
        let chunks = chunker.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
        (chunks, chunker.finish())
    }

    #[test]
    fn empty_file_has_no_chunks() {
        assert!(chunk_boundaries(&[]).is_empty());
        let (chunks, digest) = chunk_all(io::empty());
        assert!(chunks.is_empty());
        assert_eq!(digest, FileDigest::of(&[]));
    }

    #[test]
    fn small_files_are_one_chunk() {
        for len in [1, 1000, MIN_CHUNK - 1, MIN_CHUNK] {
            let data = random_bytes(len as u64, len);
            assert_eq!(chunk_boundaries(&data), vec![(0, len)]);
            let (chunks, digest) = chunk_all(&data[..]);
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].data, data);
            assert_eq!(chunks[0].id, ChunkId::of(&data));
            assert_eq!(digest, FileDigest::of(&data));
        }
    }

    #[test]
    fn small_files_use_a_small_buffer() {
        let data = random_bytes(11, 1000);
        let mut chunker = Chunker::new(&data[..]);
        assert_eq!(chunker.next().unwrap().unwrap().data, data);
        assert!(chunker.cutter.buf.capacity() <= FIRST_READ);
        assert!(chunker.next().is_none());
    }

    #[test]
    fn chunk_sizes_respect_limits() {
        let data = random_bytes(1, 40 * MIB);
        let bounds = chunk_boundaries(&data);
        assert!(bounds.len() > 10, "{} chunks", bounds.len());
        let mut expected_offset = 0;
        for (i, &(off, len)) in bounds.iter().enumerate() {
            assert_eq!(off, expected_offset);
            assert!(len <= MAX_CHUNK);
            if i + 1 < bounds.len() {
                assert!(len >= MIN_CHUNK, "chunk {i} is {len} bytes");
            }
            expected_offset += len;
        }
        assert_eq!(expected_offset, data.len());
        // Random data cuts by content, not by the size limits alone.
        assert!(
            bounds
                .iter()
                .any(|&(_, len)| len != MAX_CHUNK && len != MIN_CHUNK)
        );
    }

    #[test]
    fn boundaries_are_fastcdc_2020() {
        let data = random_bytes(2, 20 * MIB);
        let reference: Vec<(usize, usize)> =
            v2020::FastCDC::new(&data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
                .map(|c| (c.offset, c.length))
                .collect();
        assert_eq!(chunk_boundaries(&data), reference);
    }

    #[test]
    fn cutting_then_hashing_is_chunking() {
        let data = random_bytes(4, 9 * MIB + 77);
        let (chunks, digest) = chunk_all(&data[..]);
        let mut hasher = ChunkHasher::new();
        let hashed: Vec<Chunk> = Cutter::new(Trickle {
            data: &data,
            step: 65_537,
        })
        .map(|cut| hasher.hash(cut.unwrap()))
        .collect();
        assert_eq!(hashed, chunks);
        assert_eq!(hasher.digest(), digest);
        assert_eq!(digest, FileDigest::of(&data));
    }

    #[test]
    fn chunker_matches_chunk_boundaries() {
        let data = random_bytes(3, 30 * MIB + 12345);
        let bounds = chunk_boundaries(&data);
        // Whole-slice reads and tiny odd-sized reads must cut identically.
        for step in [usize::MAX, 7919] {
            let (chunks, digest) = chunk_all(Trickle { data: &data, step });
            let got: Vec<(usize, usize)> = chunks
                .iter()
                .map(|c| (c.offset as usize, c.data.len()))
                .collect();
            assert_eq!(got, bounds, "read step {step}");
            for c in &chunks {
                let off = c.offset as usize;
                assert_eq!(c.data, &data[off..off + c.data.len()]);
                assert_eq!(c.id, ChunkId::of(&c.data));
            }
            assert_eq!(digest, FileDigest::of(&data));
        }
    }

    #[test]
    fn uniform_data_is_cut_at_max() {
        let data = vec![0u8; 10 * MIB + 5];
        let (chunks, digest) = chunk_all(&data[..]);
        let lens: Vec<usize> = chunks.iter().map(|c| c.data.len()).collect();
        assert_eq!(lens, vec![MAX_CHUNK, MAX_CHUNK, 2 * MIB + 5]);
        assert_eq!(chunks[0].id, chunks[1].id);
        assert_eq!(digest, FileDigest::of(&data));
    }

    #[test]
    fn insertion_at_start_changes_few_chunks() {
        let data = random_bytes(4, 100 * MIB);
        let mut shifted = Vec::with_capacity(data.len() + 1);
        shifted.push(0x5a);
        shifted.extend_from_slice(&data);
        let before: HashSet<ChunkId> = ids(&data).into_iter().collect();
        let after = ids(&shifted);
        let new = after.iter().filter(|id| !before.contains(id)).count();
        assert!(
            (1..=3).contains(&new),
            "{new} of {} chunks changed",
            after.len()
        );
    }

    #[test]
    fn flipping_a_byte_changes_one_chunk() {
        let mut data = random_bytes(5, 100 * MIB);
        let before = ids(&data);
        data[50 * MIB + 333] ^= 0xff;
        let after = ids(&data);
        assert_eq!(before.len(), after.len());
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 1);
    }

    #[test]
    fn memory_stays_bounded_on_large_input() {
        const LEN: u64 = 64 * MIB as u64;
        let reader = LazyRandom {
            rng: StdRng::seed_from_u64(6),
            remaining: LEN,
        };
        let mut chunker = Chunker::new(reader);
        let mut total = 0u64;
        let mut count = 0;
        while let Some(chunk) = chunker.next() {
            let chunk = chunk.unwrap();
            assert_eq!(chunk.offset, total);
            assert!(chunk.data.len() <= MAX_CHUNK);
            assert!(chunker.cutter.buf.capacity() <= BUF_CAP);
            total += chunk.data.len() as u64;
            count += 1;
        }
        assert_eq!(total, LEN);
        assert!(count >= LEN as usize / MAX_CHUNK);
        assert_eq!(chunker.finish().size, LEN);
    }

    #[test]
    fn read_errors_end_iteration() {
        let mut chunker = Chunker::new(Failing { good: 100 });
        assert!(matches!(chunker.next(), Some(Err(ContentError::Io(_)))));
        assert!(chunker.next().is_none());
    }
}
