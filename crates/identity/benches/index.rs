//! Identity index: insert and query latency at 10k and 100k stored vectors
//! (1280-d, the embedded MobileNetV2; 512-d, OSNet-style re-ID), plus
//! recall@1 against brute force and query p99, printed from the setup.
//!
//! `IDENTITY_BENCH_SIZES=10000,100000` (default under `cargo bench`) picks the sizes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use streamer_identity::{dot, HnswParams, IdentityConfig, IdentityIndex, IndexEntry, VisitId};

/// People (clusters) per 100 vectors: each person seen ~20 times.
const SIGHTINGS_PER_PERSON: usize = 20;
/// Spread of one person's sightings around their centre (per component,
/// before normalising, relative to the centre's).
const SPREAD: f32 = 0.6;
const QUERIES: usize = 1000;
/// Candidate list sizes whose recall and latency are reported.
const EF_SWEEP: [usize; 4] = [16, 32, 64, 128];
const K: usize = 10;

/// The shipped defaults (`IdentityConfig::default()`), in one bucket.
fn params() -> HnswParams {
    HnswParams {
        bucket_span_ms: u64::MAX / 2,
        capacity_hint: 100_000,
        ..HnswParams::from_config(&IdentityConfig::default())
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next()).collect()
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = dot(&v, &v).sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// `n` unit vectors in clusters, and `QUERIES` new sightings of those people.
fn data(n: usize, dim: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = Rng(0x5EED ^ (n as u64 * 31 + dim as u64));
    let people: Vec<Vec<f32>> = (0..n / SIGHTINGS_PER_PERSON)
        .map(|_| unit(rng.vector(dim)))
        .collect();
    let sighting = |rng: &mut Rng, p: usize| {
        let centre = &people[p % people.len()];
        let noise = unit(rng.vector(dim));
        unit(
            centre
                .iter()
                .zip(noise)
                .map(|(c, e)| c + SPREAD * e)
                .collect(),
        )
    };
    let stored = (0..n).map(|i| sighting(&mut rng, i)).collect();
    let queries = (0..QUERIES).map(|i| sighting(&mut rng, i * 7919)).collect();
    (stored, queries)
}

fn build(stored: &[Vec<f32>]) -> IdentityIndex {
    let mut index = IdentityIndex::new(params());
    let items = stored
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                v.as_slice(),
                IndexEntry {
                    visit: VisitId(i as u64),
                    camera: "bench".into(),
                    time_ms: 0,
                },
            )
        })
        .collect();
    index.insert_many(items).unwrap();
    index
}

fn sizes() -> Vec<usize> {
    // `cargo test --all-targets` runs benches once as a smoke test (without
    // `--bench`): keep that to a small index so the test suite stays fast.
    let default = if std::env::args().any(|a| a == "--bench") {
        "10000,100000"
    } else {
        "2000"
    };
    std::env::var("IDENTITY_BENCH_SIZES")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("IDENTITY_BENCH_SIZES: comma-separated counts")
        })
        .collect()
}

fn index_benches(c: &mut Criterion) {
    for dim in [1280, 512] {
        for n in sizes() {
            let (stored, queries) = data(n, dim);
            let start = Instant::now();
            let mut index = build(&stored);
            let built = start.elapsed();

            // The exact nearest neighbour of each query, by brute force.
            let exact: Vec<u64> = queries
                .iter()
                .map(|q| {
                    stored
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i as u64, dot(q, v)))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .unwrap()
                        .0
                })
                .collect();
            println!(
                "identity index {n} x {dim}-d (m {}, ef_construction {}, k {K}): build {:.1} s ({:.0} inserts/s on all cores)",
                params().m,
                params().ef_construction,
                built.as_secs_f64(),
                n as f64 / built.as_secs_f64(),
            );
            let target = if n >= 100_000 {
                Duration::from_millis(1)
            } else {
                Duration::from_micros(100)
            };
            // Recall@1 and per-query latency for a range of ef_search.
            for ef in EF_SWEEP {
                index.set_ef_search(ef);
                let mut hits = 0;
                let mut times: Vec<Duration> = Vec::with_capacity(QUERIES);
                for (q, want) in queries.iter().zip(&exact) {
                    let t = Instant::now();
                    let found = index.query(q, K, 0).unwrap();
                    times.push(t.elapsed());
                    if found.first().map(|h| h.entry.visit.0) == Some(*want) {
                        hits += 1;
                    }
                }
                times.sort();
                let recall = hits as f64 / QUERIES as f64;
                let p99 = times[QUERIES * 99 / 100];
                println!(
                    "  ef_search {ef:>3}: recall@1 {recall:.3} ({}), query p50 {:?}, p99 {p99:?} (target < {target:?}: {})",
                    if recall >= 0.99 { "met" } else { "MISSED" },
                    times[QUERIES / 2],
                    if p99 < target { "met" } else { "MISSED" },
                );
            }
            index.set_ef_search(params().ef_search);

            let mut group = c.benchmark_group(format!("identity_index_{dim}d"));
            group.sample_size(20);
            group.bench_function(BenchmarkId::new("query_k10", n), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % QUERIES;
                    black_box(index.query(&queries[i], K, 0).unwrap())
                })
            });
            group.bench_function(BenchmarkId::new("insert", n), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % QUERIES;
                    let entry = IndexEntry {
                        visit: VisitId(u64::MAX),
                        camera: "bench".into(),
                        time_ms: 0,
                    };
                    index.insert(&queries[i], entry).unwrap()
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, index_benches);
criterion_main!(benches);
