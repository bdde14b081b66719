//! The time-bucketed HNSW index of person embeddings.
//!
//! hnsw_rs graphs cannot delete points, so sightings go into one graph per
//! time bucket (`bucket_span_ms`) and ageing drops whole buckets. A query
//! searches every bucket that overlaps its time window and merges the hits.
//! hnsw_rs builds each graph; queries walk a flat copy of it
//! ([`crate::graph`]), which is several times faster than hnsw_rs's own
//! search.

use std::collections::VecDeque;

use hnsw_rs::hnsw::Hnsw;

use crate::distance::CosineDistance;
use crate::graph::FlatGraph;
use crate::{IdentityConfig, IdentityError, VisitId};

/// hnsw_rs caps the number of layers at 16; that many suits millions of points.
const MAX_LAYERS: usize = 16;

/// How far a vector's squared norm may be from 1 and still count as unit.
const UNIT_NORM_TOLERANCE: f32 = 1e-2;

/// Graph parameters of an [`IdentityIndex`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HnswParams {
    /// Links per node (`M`).
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Candidate list size while searching.
    pub ef_search: usize,
    /// Time span of one bucket (one graph), in milliseconds.
    pub bucket_span_ms: u64,
    /// Points per bucket to allocate for up front.
    pub capacity_hint: usize,
}

impl HnswParams {
    /// The index part of an identity config.
    pub fn from_config(config: &IdentityConfig) -> Self {
        Self {
            m: config.hnsw_m,
            ef_construction: config.hnsw_ef_construction,
            ef_search: config.hnsw_ef_search,
            bucket_span_ms: config.bucket_span_ms,
            capacity_hint: DEFAULT_CAPACITY_HINT,
        }
    }
}

/// Points a bucket allocates for before it grows.
const DEFAULT_CAPACITY_HINT: usize = 1024;

/// What the index remembers about each stored embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexEntry {
    pub visit: VisitId,
    pub camera: String,
    pub time_ms: u64,
}

/// A stored embedding close to a query.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbour {
    pub entry: IndexEntry,
    /// Cosine similarity to the query, in [-1, 1].
    pub similarity: f32,
}

struct Bucket {
    start_ms: u64,
    graph: Hnsw<'static, f32, CosineDistance>,
    /// The copy of `graph` that queries search.
    flat: FlatGraph,
    entries: Vec<IndexEntry>,
}

/// Embeddings with camera, time and visit, searchable by cosine similarity
/// within a time window.
pub struct IdentityIndex {
    params: HnswParams,
    dim: Option<usize>,
    /// Oldest first, by `start_ms`.
    buckets: VecDeque<Bucket>,
}

impl IdentityIndex {
    pub fn new(params: HnswParams) -> Self {
        Self {
            params,
            dim: None,
            buckets: VecDeque::new(),
        }
    }

    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Changes the candidate list size of later queries (the graph stays).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.params.ef_search = ef.max(1);
    }

    /// Dimension of the stored vectors (fixed by the first insert).
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// Number of stored embeddings.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Checks that `embedding` is a finite unit vector of the index's size.
    pub fn check(&self, embedding: &[f32]) -> Result<(), IdentityError> {
        if let Some(expected) = self.dim {
            if embedding.len() != expected {
                return Err(IdentityError::Dimension {
                    expected,
                    got: embedding.len(),
                });
            }
        }
        let norm2 = crate::distance::dot(embedding, embedding);
        if !norm2.is_finite() || (norm2 - 1.0).abs() > UNIT_NORM_TOLERANCE {
            return Err(IdentityError::NotNormalised { norm: norm2.sqrt() });
        }
        Ok(())
    }

    /// Stores an L2-normalised embedding.
    pub fn insert(&mut self, embedding: &[f32], entry: IndexEntry) -> Result<(), IdentityError> {
        self.check(embedding)?;
        self.dim = Some(embedding.len());
        let span = self.params.bucket_span_ms;
        let start_ms = entry.time_ms / span * span;
        let at = match self.buckets.iter().rposition(|b| b.start_ms <= start_ms) {
            Some(i) if self.buckets[i].start_ms == start_ms => i,
            found => {
                let i = found.map_or(0, |i| i + 1);
                let graph = Hnsw::new(
                    self.params.m,
                    self.params.capacity_hint,
                    MAX_LAYERS,
                    self.params.ef_construction,
                    CosineDistance,
                );
                self.buckets.insert(
                    i,
                    Bucket {
                        start_ms,
                        graph,
                        flat: FlatGraph::new(embedding.len(), self.params.m),
                        entries: Vec::new(),
                    },
                );
                i
            }
        };
        let bucket = &mut self.buckets[at];
        bucket.graph.insert_slice((embedding, bucket.entries.len()));
        bucket.flat.after_insert(&bucket.graph);
        bucket.entries.push(entry);
        Ok(())
    }

    /// Stores many embeddings at once, inserting into each bucket's graph on
    /// all cores (hnsw_rs uses rayon).
    pub fn insert_many(&mut self, items: Vec<(&[f32], IndexEntry)>) -> Result<(), IdentityError> {
        let Some((first, _)) = items.first() else {
            return Ok(());
        };
        let dim = self.dim.unwrap_or(first.len());
        self.dim = Some(dim);
        for (v, _) in &items {
            self.check(v)?;
        }
        let span = self.params.bucket_span_ms;
        let mut rest = items;
        while !rest.is_empty() {
            let start = rest[0].1.time_ms / span * span;
            let (same, other): (Vec<_>, Vec<_>) = rest
                .into_iter()
                .partition(|(_, e)| e.time_ms / span * span == start);
            rest = other;
            // One ordinary insert creates (or finds) the bucket.
            let mut same = same.into_iter();
            let (v, e) = same.next().expect("partition keeps the first item");
            self.insert(v, e)?;
            let bucket = self
                .buckets
                .iter_mut()
                .find(|b| b.start_ms == start)
                .expect("the insert above made the bucket");
            let base = bucket.entries.len();
            let mut batch = Vec::new();
            for (i, (v, e)) in same.enumerate() {
                batch.push((v, base + i));
                bucket.entries.push(e);
            }
            bucket.graph.parallel_insert_slice(&batch);
            bucket.flat.copy_all(&bucket.graph);
        }
        Ok(())
    }

    /// The `k` stored embeddings most similar to `embedding` among those
    /// stamped at or after `since_ms`, most similar first.
    pub fn query(
        &self,
        embedding: &[f32],
        k: usize,
        since_ms: u64,
    ) -> Result<Vec<Neighbour>, IdentityError> {
        self.check(embedding)?;
        let span = self.params.bucket_span_ms;
        let ef = self.params.ef_search.max(k);
        let mut hits = Vec::new();
        for bucket in &self.buckets {
            if bucket.start_ms.saturating_add(span) <= since_ms {
                continue;
            }
            let whole = bucket.start_ms >= since_ms;
            let recent = |id: u32| whole || bucket.entries[id as usize].time_ms >= since_ms;
            let found = bucket.flat.search(embedding, k, ef, recent);
            hits.extend(found.into_iter().map(|n| Neighbour {
                entry: bucket.entries[n.id as usize].clone(),
                similarity: 1.0 - n.distance,
            }));
        }
        hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        hits.truncate(k);
        Ok(hits)
    }

    /// Drops every bucket whose whole span lies before `before_ms`; returns
    /// how many embeddings went with them.
    pub fn expire(&mut self, before_ms: u64) -> usize {
        let span = self.params.bucket_span_ms;
        let mut dropped = 0;
        while let Some(b) = self.buckets.front() {
            if b.start_ms.saturating_add(span) > before_ms {
                break;
            }
            dropped += b.entries.len();
            self.buckets.pop_front();
        }
        dropped
    }
}

impl IdentityIndex {
    /// Drops every bucket none of whose embeddings belongs to a visit that
    /// `keep` accepts; returns how many embeddings went with them.
    pub fn drop_buckets_unless(&mut self, keep: impl Fn(VisitId) -> bool) -> usize {
        let before = self.len();
        self.buckets
            .retain(|b| b.entries.iter().any(|e| keep(e.visit)));
        before - self.len()
    }
}

impl std::fmt::Debug for IdentityIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityIndex")
            .field("params", &self.params)
            .field("dim", &self.dim)
            .field("buckets", &self.buckets.len())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{blend, unit, PARAMS};

    fn entry(visit: u64, time_ms: u64) -> IndexEntry {
        IndexEntry {
            visit: VisitId(visit),
            camera: "a".into(),
            time_ms,
        }
    }

    #[test]
    fn nearest_neighbour_of_a_stored_vector_is_itself() {
        let mut index = IdentityIndex::new(PARAMS);
        for i in 0..50 {
            index.insert(&unit(16, i), entry(i, i * 10)).unwrap();
        }
        for i in [0, 17, 49] {
            let hits = index.query(&unit(16, i), 3, 0).unwrap();
            assert_eq!(hits[0].entry.visit, VisitId(i));
            assert!((hits[0].similarity - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn queries_ignore_embeddings_older_than_the_window() {
        let mut index = IdentityIndex::new(PARAMS);
        index.insert(&unit(16, 1), entry(1, 500)).unwrap();
        index.insert(&unit(16, 2), entry(2, 1_500)).unwrap();
        let hits = index.query(&unit(16, 1), 5, 1_000).unwrap();
        assert!(hits.iter().all(|h| h.entry.visit == VisitId(2)), "{hits:?}");
    }

    #[test]
    fn the_window_also_cuts_inside_a_bucket() {
        let mut index = IdentityIndex::new(PARAMS); // 1 s buckets
        let old = unit(16, 1);
        index.insert(&old, entry(1, 100)).unwrap();
        index
            .insert(&blend(&old, &unit(16, 2), 0.3), entry(2, 900))
            .unwrap();
        let hits = index.query(&old, 5, 500).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].entry.visit, VisitId(2));
        assert!(hits[0].similarity < 0.99);
    }

    #[test]
    fn ageing_drops_whole_buckets_of_old_embeddings() {
        let mut index = IdentityIndex::new(PARAMS); // 1 s buckets
        for t in [0, 400, 1_200, 2_500] {
            index.insert(&unit(16, t), entry(t, t)).unwrap();
        }
        assert_eq!((index.len(), index.bucket_count()), (4, 3));
        assert_eq!(index.expire(1_999), 2); // the [0, 1000) bucket
        assert_eq!(index.expire(2_000), 1); // the [1000, 2000) bucket
        assert_eq!(index.len(), 1);
        assert!(index.query(&unit(16, 0), 5, 0).unwrap().len() == 1);
    }

    #[test]
    fn wrong_sizes_and_unnormalised_vectors_are_rejected() {
        let mut index = IdentityIndex::new(PARAMS);
        index.insert(&unit(16, 1), entry(1, 0)).unwrap();
        assert!(matches!(
            index.insert(&unit(8, 1), entry(1, 0)),
            Err(IdentityError::Dimension {
                expected: 16,
                got: 8
            })
        ));
        assert!(matches!(
            index.query(&[2.0; 16], 1, 0),
            Err(IdentityError::NotNormalised { .. })
        ));
    }
}
