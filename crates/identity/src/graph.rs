//! A flat, read-optimised copy of one hnsw_rs graph, which queries walk.
//!
//! hnsw_rs builds the graph: it picks each point's layer, searches for its
//! neighbours and prunes the reverse links. Its own search, though, reaches
//! every neighbour through a reference-counted, individually allocated point
//! (a cache miss per neighbour, a hash-map entry and an allocation per
//! candidate), and reads 5 KB of `f32` per 1280-d distance, which puts it at
//! 3-5x the latency targets of the identity index. This module keeps the same
//! links as plain `u32` arrays and each vector as 4-bit codes
//! ([`crate::codes`]) in one contiguous block, and runs the standard HNSW
//! search on them: greedy descent through the upper layers, then a
//! best-first search of width `ef` in layer 0. The nearest candidates it
//! finds are scored again exactly against the `f32` vectors hnsw_rs keeps, so
//! callers see exact similarities.
//!
//! The copy follows the graph exactly: after a single insert it re-reads the
//! lists of the new point and of every point the insert may have changed (the
//! new point's neighbours, which got a reverse link); after a parallel insert
//! it copies the whole graph again. The unit tests compare every list.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use hnsw_rs::hnsw::{Hnsw, Neighbour, Point};

use crate::codes::{encode, row_bytes, QueryCodes};
use crate::distance::{dot, CosineDistance};

type Graph = Hnsw<'static, f32, CosineDistance>;
type PointRef = Arc<Point<'static, f32>>;

/// How many times `k` candidates are scored again exactly.
const RESCORED: usize = 2;

/// A point id and its distance (`1 - cosine`) to the query.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scored {
    pub distance: f32,
    pub id: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

/// The searchable copy of one bucket's graph. Point ids are the data ids the
/// bucket gave hnsw_rs (0, 1, 2, ... in insertion order).
pub(crate) struct FlatGraph {
    /// Row `id` is point `id`'s vector as 4-bit codes ([`crate::codes`]);
    /// the search ranks by these, then re-ranks its result with the exact
    /// vectors hnsw_rs keeps.
    codes: Vec<u8>,
    row: usize,
    scales: Vec<f32>,
    /// Layer-0 links, `stride` slots per point: the count, then the ids.
    links: Vec<u32>,
    stride: usize,
    /// `upper[id][l - 1]`: links of point `id` in layer `l`, up to its last
    /// non-empty list (most points have none, and allocate nothing here).
    upper: Vec<Vec<Vec<u32>>>,
    /// The point every search starts from, and its top layer.
    entry: Option<(u32, u8)>,
    /// hnsw_rs's own handles, to re-read lists an insert changed.
    points: Vec<Option<PointRef>>,
    /// Points per hnsw_rs layer already copied (finds the new point).
    layer_counts: Vec<usize>,
}

impl FlatGraph {
    /// An empty copy for vectors of `dim` values and up to `2 m` layer-0 links.
    pub fn new(dim: usize, m: usize) -> Self {
        Self {
            codes: Vec::new(),
            row: row_bytes(dim),
            scales: Vec::new(),
            links: Vec::new(),
            stride: 1 + 2 * m,
            upper: Vec::new(),
            entry: None,
            points: Vec::new(),
            layer_counts: Vec::new(),
        }
    }

    fn codes(&self, id: u32) -> &[u8] {
        let at = id as usize * self.row;
        &self.codes[at..at + self.row]
    }

    fn layer0(&self, id: u32) -> &[u32] {
        let at = id as usize * self.stride;
        let count = self.links[at] as usize;
        &self.links[at + 1..at + 1 + count]
    }

    /// Approximate `1 - cosine` from the codes.
    fn distance(&self, query: &QueryCodes, id: u32) -> f32 {
        1.0 - query.dot(self.codes(id), self.scales[id as usize])
    }

    /// hnsw_rs's copy of point `id`'s vector.
    fn exact_vector(&self, id: u32) -> &[f32] {
        self.points[id as usize]
            .as_ref()
            .expect("every searched id was copied")
            .get_v()
    }

    /// Makes room for point `id`.
    fn grow_to(&mut self, id: usize) {
        let n = id + 1;
        if self.points.len() < n {
            self.points.resize(n, None);
            self.upper.resize(n, Vec::new());
            self.codes.resize(n * self.row, 0);
            self.scales.resize(n, 0.0);
            self.links.resize(n * self.stride, 0);
        }
    }

    /// Copies point `p`'s vector and the lists of its own layers.
    fn copy_point(&mut self, p: &PointRef) {
        let id = p.get_origin_id();
        self.grow_to(id);
        let at = id * self.row;
        self.scales[id] = encode(p.get_v(), &mut self.codes[at..at + self.row]);
        self.copy_links(p);
        self.points[id] = Some(Arc::clone(p));
    }

    fn copy_links(&mut self, p: &PointRef) {
        let id = p.get_origin_id();
        let lists = p.get_neighborhood_id();
        let ids = |list: &[Neighbour]| list.iter().map(|n| n.d_id as u32).collect::<Vec<_>>();
        let layer0 = lists.first().map(|l| ids(l)).unwrap_or_default();
        if layer0.len() + 1 > self.stride {
            self.widen(layer0.len() + 1);
        }
        let at = id * self.stride;
        self.links[at] = layer0.len() as u32;
        self.links[at + 1..at + 1 + layer0.len()].copy_from_slice(&layer0);
        // hnsw_rs may link a point in layers above its own (the first points
        // of a graph serve as entry to layers that were still empty), so
        // every non-empty list is kept.
        let used = lists.iter().rposition(|l| !l.is_empty()).unwrap_or(0);
        self.upper[id] = lists
            .get(1..=used)
            .unwrap_or_default()
            .iter()
            .map(|list| ids(list))
            .collect();
    }

    /// Re-lays layer 0 with room for `stride - 1` links per point (hnsw_rs
    /// keeps at most `2 m`, so this only guards against a change there).
    fn widen(&mut self, stride: usize) {
        let mut links = vec![0; self.points.len() * stride];
        for (id, row) in self.links.chunks_exact(self.stride).enumerate() {
            let count = row[0] as usize;
            links[id * stride..id * stride + 1 + count].copy_from_slice(&row[..1 + count]);
        }
        self.links = links;
        self.stride = stride;
    }

    fn set_entry_from(&mut self, graph: &Graph) {
        // hnsw_rs moves its entry point to a new point only when that point
        // reaches a higher layer, so the entry is the first point of the top
        // layer.
        let top = graph.get_point_indexation().get_max_level_observed() as usize;
        self.entry = graph
            .get_point_indexation()
            .get_layer_iterator(top)
            .next()
            .map(|p| (p.get_origin_id() as u32, p.get_point_id().0));
    }

    /// Brings the copy up to date after `graph.insert_slice` stored one point.
    pub fn after_insert(&mut self, graph: &Graph) {
        let indexation = graph.get_point_indexation();
        self.layer_counts.resize(16, 0);
        let Some((layer, rank)) = (0..self.layer_counts.len()).find_map(|l| {
            let now = indexation.get_layer_nb_point(l);
            (now > self.layer_counts[l]).then(|| (l, self.layer_counts[l]))
        }) else {
            return;
        };
        self.layer_counts[layer] += 1;
        let new_point = indexation
            .get_layer_iterator(layer)
            .nth(rank)
            .expect("hnsw_rs appends a new point to its layer");
        self.copy_point(&new_point);
        // The insert gave each of the new point's neighbours a reverse link
        // (and may have pruned one of theirs): copy their lists again.
        for list in new_point.get_neighborhood_id().iter().take(layer + 1) {
            for n in list {
                if let Some(q) = self.points.get(n.d_id).cloned().flatten() {
                    self.copy_links(&q);
                }
            }
        }
        self.set_entry_from(graph);
    }

    /// Copies the whole graph again (after a parallel insert).
    pub fn copy_all(&mut self, graph: &Graph) {
        let indexation = graph.get_point_indexation();
        for p in indexation {
            self.copy_point(&p);
        }
        self.layer_counts = (0..16).map(|l| indexation.get_layer_nb_point(l)).collect();
        self.set_entry_from(graph);
    }

    /// The `k` nearest points to `query` among those `allowed`, nearest first,
    /// searching layer 0 with a candidate list of `ef` (at least `k`).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allowed: impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let Some((entry, top)) = self.entry else {
            return Vec::new();
        };
        let ef = ef.max(k).max(1);
        let exact = query;
        let query = &QueryCodes::new(query);
        // Greedy descent through the upper layers.
        let mut here = Scored {
            distance: self.distance(query, entry),
            id: entry,
        };
        for layer in (1..=top as usize).rev() {
            loop {
                let mut moved = false;
                let links = self.upper[here.id as usize]
                    .get(layer - 1)
                    .map_or(&[][..], Vec::as_slice);
                for &n in links {
                    let d = self.distance(query, n);
                    if d < here.distance {
                        here = Scored { distance: d, id: n };
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        // Best-first search of layer 0. `candidates` pops the nearest first;
        // `best` holds the `ef` nearest allowed points, farthest on top.
        let mut visited = vec![0u64; self.points.len().div_ceil(64)];
        let mut mark = |id: u32| {
            let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
            let seen = visited[word] & bit != 0;
            visited[word] |= bit;
            seen
        };
        mark(here.id);
        let mut candidates = BinaryHeap::with_capacity(ef * 4);
        let mut best: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
        candidates.push(std::cmp::Reverse(here));
        if allowed(here.id) {
            best.push(here);
        }
        let mut fresh = Vec::with_capacity(self.stride);
        while let Some(std::cmp::Reverse(c)) = candidates.pop() {
            let bound = best.peek().map_or(f32::INFINITY, |f| f.distance);
            if c.distance > bound && best.len() >= ef {
                break;
            }
            fresh.clear();
            for &n in self.layer0(c.id) {
                if !mark(n) {
                    prefetch(self.codes(n));
                    fresh.push(n);
                }
            }
            for &n in &fresh {
                let d = self.distance(query, n);
                let bound = best.peek().map_or(f32::INFINITY, |f| f.distance);
                if best.len() < ef || d < bound {
                    let s = Scored { distance: d, id: n };
                    // Its links are read when it is expanded.
                    let at = n as usize * self.stride;
                    prefetch(&self.links[at..at + self.stride]);
                    candidates.push(std::cmp::Reverse(s));
                    if allowed(n) {
                        best.push(s);
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
        }
        // The codes pick the candidates; exact scores rank the nearest
        // `RESCORED * k` of them (codes err by a few hundredths, so the true
        // `k` nearest are among them). All their rows are requested from
        // memory before the first is read.
        let mut found = best.into_sorted_vec();
        found.truncate(RESCORED * k);
        let rows: Vec<&[f32]> = found.iter().map(|s| self.exact_vector(s.id)).collect();
        for row in &rows {
            prefetch(row);
        }
        for (s, row) in found.iter_mut().zip(rows) {
            s.distance = (1.0 - dot(exact, row)).max(0.0);
        }
        found.sort_unstable();
        found.truncate(k);
        found
    }
}

/// Asks the CPU to start loading a row.
#[inline(always)]
fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = v.as_ptr() as *const i8;
        // SAFETY: prefetching is a hint and never faults; the offsets stay
        // inside `v`.
        unsafe {
            for line in 0..std::mem::size_of_val(v).div_ceil(64) {
                _mm_prefetch(p.add(line * 64), _MM_HINT_T0);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{blend, unit};

    const DIM: usize = 24;

    /// Small `m` gives several layers even for a few hundred points.
    fn graph() -> Graph {
        Hnsw::new(6, 1_000, 16, 40, CosineDistance)
    }

    /// 30 people, each seen up to 20 times around their own direction.
    fn sightings(n: usize) -> Vec<Vec<f32>> {
        (0..n as u64)
            .map(|i| blend(&unit(DIM, i % 30), &unit(DIM, 1_000 + i), 0.35))
            .collect()
    }

    /// Every list the search can reach is the same in the copy as in hnsw_rs.
    fn assert_same_links(flat: &FlatGraph, graph: &Graph) {
        let indexation = graph.get_point_indexation();
        assert_eq!(flat.points.len(), indexation.get_nb_point());
        let mut upper_lists = 0;
        for p in indexation {
            let id = p.get_origin_id();
            let lists = p.get_neighborhood_id();
            let ids = |l: usize| lists[l].iter().map(|n| n.d_id as u32).collect::<Vec<_>>();
            assert_eq!(flat.layer0(id as u32), ids(0), "layer 0 of point {id}");
            for l in 1..lists.len() {
                let copied = flat.upper[id].get(l - 1).cloned().unwrap_or_default();
                assert_eq!(copied, ids(l), "layer {l} of point {id}");
                upper_lists += usize::from(!copied.is_empty());
            }
            let mut codes = vec![0; row_bytes(DIM)];
            let scale = encode(p.get_v(), &mut codes);
            assert_eq!(
                (flat.codes(id as u32), flat.scales[id]),
                (&codes[..], scale)
            );
        }
        assert!(upper_lists > 0, "the test graph should have upper layers");
        let (_, top) = flat.entry.expect("an entry point");
        assert_eq!(top, indexation.get_max_level_observed());
    }

    #[test]
    fn the_copy_follows_every_single_insert() {
        let graph = graph();
        let mut flat = FlatGraph::new(DIM, 6);
        for (i, v) in sightings(400).iter().enumerate() {
            graph.insert_slice((v, i));
            flat.after_insert(&graph);
            if i % 97 == 0 || i == 399 {
                // The first points have no upper layers yet.
                if i > 50 {
                    assert_same_links(&flat, &graph);
                }
            }
        }
    }

    #[test]
    fn the_copy_of_a_parallel_insert_matches() {
        let graph = graph();
        let data = sightings(600);
        let batch: Vec<(&[f32], usize)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_slice(), i))
            .collect();
        graph.parallel_insert_slice(&batch);
        let mut flat = FlatGraph::new(DIM, 6);
        flat.copy_all(&graph);
        assert_same_links(&flat, &graph);
    }

    #[test]
    fn search_finds_the_exact_nearest_and_respects_the_filter() {
        let graph = graph();
        let mut flat = FlatGraph::new(DIM, 6);
        let data = sightings(500);
        for (i, v) in data.iter().enumerate() {
            graph.insert_slice((v, i));
            flat.after_insert(&graph);
        }
        let brute = |q: &[f32], allowed: &dyn Fn(u32) -> bool| {
            (0..data.len() as u32)
                .filter(|&i| allowed(i))
                .max_by(|&a, &b| dot(q, &data[a as usize]).total_cmp(&dot(q, &data[b as usize])))
                .unwrap()
        };
        let even = |id: u32| id.is_multiple_of(2);
        let (mut hits, mut even_hits) = (0, 0);
        for seed in 0..100 {
            let q = blend(&unit(DIM, seed % 30), &unit(DIM, 5_000 + seed), 0.35);
            let found = flat.search(&q, 5, 32, |_| true);
            assert_eq!(found.len(), 5);
            assert!(found.windows(2).all(|w| w[0].distance <= w[1].distance));
            hits += usize::from(found[0].id == brute(&q, &|_| true));
            let found = flat.search(&q, 5, 32, even);
            assert!(found.iter().all(|s| even(s.id)), "{found:?}");
            even_hits += usize::from(found[0].id == brute(&q, &even));
        }
        assert!(hits >= 99, "recall@1 {hits}/100");
        assert!(even_hits >= 99, "filtered recall@1 {even_hits}/100");
    }

    #[test]
    fn an_empty_copy_finds_nothing() {
        let flat = FlatGraph::new(DIM, 6);
        assert!(flat.search(&unit(DIM, 1), 3, 16, |_| true).is_empty());
    }
}
