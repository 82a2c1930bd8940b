//! Throughput of the upload pipeline on one core: chunk (FastCDC), hash (BLAKE3
//! per chunk and for the whole file) and encode (zstd when it pays).
//!
//! `cargo bench -p loft-remote --bench pipeline`. Environment: `LOFT_BENCH_MIB`,
//! the size of each dataset (default 512); `LOFT_BENCH_RUNS`, how many times each
//! measurement runs, the best counting (default 3).
//!
//! MB/s are 10^6 bytes per second of the benchmark thread's CPU time where Linux
//! reports it (so other load on a shared machine does not count against us),
//! else of wall-clock time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use loft_remote::content::{ChunkId, Chunker, FileDigest, chunk_boundaries, encode, encode_owned};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

const MIB: usize = 1024 * 1024;

/// Makes a dataset of the given length.
type Generator = fn(usize) -> Vec<u8>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let mib = env_usize("LOFT_BENCH_MIB", 512).max(1);
    let runs = env_usize("LOFT_BENCH_RUNS", 3).max(1);
    let datasets: [(&str, Generator); 2] = [("random", random), ("text", text)];
    for (name, generate) in datasets {
        // One dataset in memory at a time.
        let data = generate(mib * MIB);
        pipeline(name, &data, runs);
        stages(&data, runs);
    }
}

/// Incompressible bytes, like photos, video or archives.
fn random(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    SmallRng::seed_from_u64(1).fill_bytes(&mut data);
    data
}

/// Text-like bytes: words and stock phrases drawn from skewed vocabularies,
/// with punctuation and line breaks. zstd -3 shrinks it to about 30 %, like prose.
fn text(len: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(2);
    // Squaring a uniform draw favours the first entries, as in real text.
    let skewed = |rng: &mut SmallRng, n: usize| {
        let r: f64 = rng.random();
        ((r * r * n as f64) as usize).min(n - 1)
    };
    let words: Vec<Vec<u8>> = (0..4000)
        .map(|_| {
            let n = rng.random_range(2..10);
            (0..n).map(|_| rng.random_range(b'a'..=b'z')).collect()
        })
        .collect();
    let phrases: Vec<Vec<u8>> = (0..3000)
        .map(|_| {
            let n = rng.random_range(2..7);
            let picked: Vec<&[u8]> = (0..n)
                .map(|_| words[skewed(&mut rng, words.len())].as_slice())
                .collect();
            picked.join(&b' ')
        })
        .collect();
    let mut out = Vec::with_capacity(len + 128);
    let mut line = 0;
    while out.len() < len {
        let piece = if rng.random_bool(0.25) {
            &phrases[skewed(&mut rng, phrases.len())]
        } else {
            &words[skewed(&mut rng, words.len())]
        };
        out.extend_from_slice(piece);
        line += piece.len() + 1;
        match rng.random_range(0..16) {
            0 => out.extend_from_slice(b". "),
            1 => out.extend_from_slice(b", "),
            _ if line > 72 => {
                out.push(b'\n');
                line = 0;
            }
            _ => out.push(b' '),
        }
    }
    out.truncate(len);
    out
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// CPU time this thread has run, from Linux's schedstat (nanoseconds).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Best `(cpu or wall, wall)` time of `runs` runs of `f`, with `f`'s last result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut best = (Duration::MAX, Duration::MAX);
    let mut result = None;
    for _ in 0..runs {
        let (wall_start, cpu_start) = (Instant::now(), thread_cpu_time());
        result = Some(black_box(f()));
        let wall = wall_start.elapsed();
        let cpu = match (cpu_start, thread_cpu_time()) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => wall,
        };
        best = (best.0.min(cpu), best.1.min(wall));
    }
    let result = result.expect("at least one run");
    (best.0, best.1, result)
}

/// What one pass of the pipeline saw.
struct Tally {
    chunks: usize,
    compressed: usize,
    encoded_bytes: usize,
}

/// The whole pipeline, the way an uploader runs it: stream the file through
/// `Chunker` (which cuts and hashes), then encode each chunk.
fn pipeline(name: &str, data: &[u8], runs: usize) {
    let (cpu, wall, tally) = best_of(runs, || {
        let mut tally = Tally {
            chunks: 0,
            compressed: 0,
            encoded_bytes: 0,
        };
        let mut chunker = Chunker::new(data);
        for chunk in chunker.by_ref() {
            let chunk = chunk.expect("reading from memory cannot fail");
            // The uploader needs only the encoded bytes, so it hands the chunk
            // over: a chunk stored raw is then not copied again.
            let encoded = encode_owned(chunk.data);
            tally.chunks += 1;
            tally.compressed += usize::from(encoded.compressed);
            tally.encoded_bytes += encoded.data.len();
            black_box(encoded);
        }
        assert_eq!(chunker.finish().size, data.len() as u64);
        tally
    });
    println!(
        "pipeline {name}: {:.1} MB/s ({} MiB, 1 core; wall clock {:.1} MB/s)",
        mb_per_s(data.len(), cpu),
        data.len() / MIB,
        mb_per_s(data.len(), wall)
    );
    println!(
        "  {} chunks, average chunk {:.1} KiB; {} compressed; encoded size {:.1} % of input",
        tally.chunks,
        data.len() as f64 / tally.chunks.max(1) as f64 / 1024.0,
        tally.compressed,
        tally.encoded_bytes as f64 * 100.0 / data.len() as f64
    );
}

/// Each stage alone over the same data, to see where the time goes.
fn stages(data: &[u8], runs: usize) {
    let report = |label: &str, cpu: Duration| {
        println!("  {label:<34} {:>8.1} MB/s", mb_per_s(data.len(), cpu));
    };
    let (cpu, _, bounds) = best_of(runs, || chunk_boundaries(data));
    report("stage: cut (FastCDC 2020)", cpu);
    let (cpu, _, _) = best_of(runs, || {
        for &(off, len) in &bounds {
            black_box(ChunkId::of(&data[off..off + len]));
        }
    });
    report("stage: chunk ids (BLAKE3)", cpu);
    let (cpu, _, _) = best_of(runs, || FileDigest::of(data));
    report("stage: file hash (BLAKE3)", cpu);
    let (cpu, _, _) = best_of(runs, || {
        for &(off, len) in &bounds {
            black_box(data[off..off + len].to_vec());
        }
    });
    report("stage: copy into chunks", cpu);
    let (cpu, _, _) = best_of(runs, || {
        for &(off, len) in &bounds {
            black_box(encode(&data[off..off + len]));
        }
    });
    report("stage: encode (zstd -3 if it pays)", cpu);
    let (cpu, _, _) = best_of(runs, || {
        let mut chunker = Chunker::new(data);
        for chunk in chunker.by_ref() {
            black_box(chunk.expect("reading from memory cannot fail"));
        }
        chunker.finish()
    });
    report("Chunker alone (cut, hash, copy)", cpu);
}
