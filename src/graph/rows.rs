//! Adjacency in compressed sparse row form, built from arcs in any order or
//! patched from an older copy a few rows at a time.
//!
//! The rows are held in chunks of `CHUNK` nodes, each behind an `Arc`: a
//! patch makes again the chunks holding a touched node and shares the rest
//! with the older copy, so a one-link write costs two chunks, not a copy of
//! every arc (on 10M arcs, 240 MB). Chunks are also built in parallel.
//! Our own arrays rather than petgraph's `Csr` for both reasons.

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
    sync::Arc,
};

use rayon::prelude::*;

/// Nodes a chunk: small enough that a write of a hundred links remakes a
/// tenth of the chunks of a million nodes, not all of them (977 chunks of
/// 1,024 nodes; chunks of 16,384 nodes, 61, were each touched by such a
/// write, so it copied every row), large enough that the chunk table stays
/// small.
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

/// Node v's arcs, by target ascending, each with its weight. Parallel arcs
/// are merged.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    chunks: Vec<Arc<Chunk>>,
    /// `bases[c]` is the number of arcs before chunk c; one more entry, the total.
    bases: Vec<usize>,
    nodes: usize,
}

/// The rows of nodes `c * CHUNK ..` with offsets local to the chunk.
#[derive(Clone, Debug, Default, PartialEq)]
struct Chunk {
    offsets: Vec<usize>,
    targets: Vec<u32>,
    weights: Vec<f64>,
}

impl PartialEq for Rows {
    /// The same rows, however they are chunked in memory.
    fn eq(&self, other: &Rows) -> bool {
        self.nodes == other.nodes && self.bases == other.bases && self.chunks == other.chunks
    }
}

impl Chunk {
    fn with_capacity(nodes: usize, arcs: usize) -> Chunk {
        let mut offsets = Vec::with_capacity(nodes + 1);
        offsets.push(0);
        Chunk {
            offsets,
            targets: Vec::with_capacity(arcs),
            weights: Vec::with_capacity(arcs),
        }
    }

    /// Appends the next node's row from its arcs in the order they came.
    /// The sort is stable, so parallel arcs are summed in that order: a
    /// patched row sums exactly as a built one, and a pair's out-arc and
    /// in-arc weigh the same.
    fn push_row(&mut self, row: &mut [(u32, f64)], weighted: bool) {
        if !row.is_sorted_by_key(|(v, _)| *v) {
            row.sort_by_key(|(v, _)| *v);
        }
        let first = self.targets.len();
        for &(v, w) in row.iter() {
            let w = if weighted { w } else { 1.0 };
            let last = self.targets.len().checked_sub(1).filter(|&i| i >= first);
            match last {
                // A parallel arc: summed into the one before (unweighted, it stays 1).
                Some(i) if self.targets[i] == v => {
                    if weighted {
                        self.weights[i] += w;
                    }
                }
                _ => {
                    self.targets.push(v);
                    self.weights.push(w);
                }
            }
        }
        self.offsets.push(self.targets.len());
    }

    fn copy_row(&mut self, other: &Chunk, local: usize) {
        let (start, end) = (other.offsets[local], other.offsets[local + 1]);
        self.targets.extend_from_slice(&other.targets[start..end]);
        self.weights.extend_from_slice(&other.weights[start..end]);
        self.offsets.push(self.targets.len());
    }

    fn row(&self, local: usize) -> std::ops::Range<usize> {
        self.offsets[local]..self.offsets[local + 1]
    }
}

impl Rows {
    /// Rows for exactly `n` nodes from arcs in any order, merging parallel
    /// arcs (weights summed when `weighted`, else 1). A counting sort by
    /// source, then each row on its own: O(arcs) for the whole, where a
    /// comparison sort of 10M arcs took seconds.
    pub fn build(n: usize, arcs: &[(u32, u32, f64)], weighted: bool) -> Rows {
        let mut starts = vec![0usize; n + 1];
        for &(u, _, _) in arcs {
            starts[u as usize + 1] += 1;
        }
        for v in 0..n {
            starts[v + 1] += starts[v];
        }
        let mut unsorted: Vec<(u32, f64)> = vec![(0, 0.0); arcs.len()];
        let mut next = starts.clone();
        for &(u, v, w) in arcs {
            unsorted[next[u as usize]] = (v, w);
            next[u as usize] += 1;
        }
        drop(next);
        // Each chunk's arcs, as disjoint slices, so chunks build in parallel.
        let mut pieces: Vec<(usize, &mut [(u32, f64)])> = Vec::with_capacity(n.div_ceil(CHUNK));
        let mut rest = unsorted.as_mut_slice();
        for lo in (0..n).step_by(CHUNK) {
            let hi = (lo + CHUNK).min(n);
            let (piece, tail) = rest.split_at_mut(starts[hi] - starts[lo]);
            pieces.push((lo, piece));
            rest = tail;
        }
        let chunks: Vec<Arc<Chunk>> = pieces
            .into_par_iter()
            .map(|(lo, piece)| {
                let hi = (lo + CHUNK).min(n);
                let mut chunk = Chunk::with_capacity(hi - lo, piece.len());
                for u in lo..hi {
                    let row = &mut piece[starts[u] - starts[lo]..starts[u + 1] - starts[lo]];
                    chunk.push_row(row, weighted);
                }
                Arc::new(chunk)
            })
            .collect();
        Rows::of_chunks(chunks, n)
    }

    fn of_chunks(chunks: Vec<Arc<Chunk>>, nodes: usize) -> Rows {
        let mut bases = Vec::with_capacity(chunks.len() + 1);
        bases.push(0);
        for chunk in &chunks {
            bases.push(bases[bases.len() - 1] + chunk.targets.len());
        }
        Rows { chunks, bases, nodes }
    }

    /// A copy for `n` nodes (at least as many as these rows have) where each
    /// node in `replaced` gets the row made of its arcs (in the order a
    /// build would meet them) and every other node keeps its row (empty for
    /// a node these rows do not have). Chunks without a replaced or new node
    /// are shared, not copied.
    pub fn patched(&self, n: usize, replaced: &mut BTreeMap<u32, Vec<(u32, f64)>>, weighted: bool) -> Rows {
        debug_assert!(n >= self.nodes);
        let mut chunks = Vec::with_capacity(n.div_ceil(CHUNK));
        for (c, lo) in (0..n).step_by(CHUNK).enumerate() {
            let hi = (lo + CHUNK).min(n);
            let old_hi = (lo + CHUNK).min(self.nodes).max(lo);
            let untouched = replaced.range(lo as u32..hi as u32).next().is_none();
            if untouched && old_hi == hi {
                chunks.push(self.chunks[c].clone());
                continue;
            }
            let old = self.chunks.get(c);
            let mut chunk = Chunk::with_capacity(hi - lo, old.map_or(0, |o| o.targets.len()) + 16);
            for u in lo..hi {
                match (replaced.get_mut(&(u as u32)), old) {
                    (Some(arcs), _) => chunk.push_row(arcs, weighted),
                    (None, Some(old)) if u < old_hi => chunk.copy_row(old, u - lo),
                    (None, _) => chunk.push_row(&mut [], weighted),
                }
            }
            chunks.push(Arc::new(chunk));
        }
        Rows::of_chunks(chunks, n)
    }

    /// Writes the rows in a little-endian layout `read_from` reads back:
    /// the node count, then each chunk's arc count, offsets, targets and,
    /// when `weights` (an unweighted graph's are all 1), weights.
    pub fn write_to(&self, out: &mut impl Write, weights: bool) -> io::Result<()> {
        out.write_all(&(self.nodes as u64).to_le_bytes())?;
        for chunk in &self.chunks {
            out.write_all(&(chunk.targets.len() as u64).to_le_bytes())?;
            for offset in &chunk.offsets {
                out.write_all(&(*offset as u64).to_le_bytes())?;
            }
            for target in &chunk.targets {
                out.write_all(&target.to_le_bytes())?;
            }
            if weights {
                for weight in &chunk.weights {
                    out.write_all(&weight.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// The bytes `write_to` writes.
    pub fn stored_len(&self, weights: bool) -> u64 {
        let per_arc = if weights { 12 } else { 4 };
        let chunks: usize = self
            .chunks
            .iter()
            .map(|c| 8 + c.offsets.len() * 8 + c.targets.len() * per_arc)
            .sum();
        (8 + chunks) as u64
    }

    /// Rows as `write_to` wrote them, for `nodes` nodes whose arcs point
    /// below `targets_below`. Anything that could not have been written
    /// (wrong counts, offsets out of order, a target out of range) is
    /// `InvalidData`: an analysis indexes these arrays without checks.
    pub fn read_from(input: &mut impl Read, nodes: usize, targets_below: usize, weights: bool) -> io::Result<Rows> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("stored rows: {what}"));
        if read_u64(input)? != nodes as u64 {
            return Err(invalid("node count"));
        }
        let mut chunks = Vec::with_capacity(nodes.div_ceil(CHUNK));
        for lo in (0..nodes).step_by(CHUNK) {
            let rows = (lo + CHUNK).min(nodes) - lo;
            let arcs = usize::try_from(read_u64(input)?).map_err(|_| invalid("arc count"))?;
            // Bounded before allocating: 2^32 arcs in a chunk is no graph
            // this server made.
            if arcs > u32::MAX as usize {
                return Err(invalid("arc count"));
            }
            let offsets: Vec<usize> = read_array(input, rows + 1, |b| u64::from_le_bytes(b) as usize)?;
            let targets: Vec<u32> = read_array(input, arcs, u32::from_le_bytes)?;
            let weights: Vec<f64> = if weights {
                read_array(input, arcs, f64::from_le_bytes)?
            } else {
                vec![1.0; arcs]
            };
            let ordered = offsets.first() == Some(&0)
                && offsets.last() == Some(&arcs)
                && offsets.windows(2).all(|pair| pair[0] <= pair[1]);
            if !ordered {
                return Err(invalid("offsets"));
            }
            if targets.iter().any(|&t| t as usize >= targets_below) {
                return Err(invalid("a target out of range"));
            }
            chunks.push(Arc::new(Chunk {
                offsets,
                targets,
                weights,
            }));
        }
        Ok(Rows::of_chunks(chunks, nodes))
    }

    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// The nodes whose rows differ from `older`'s (arcs or weights), and
    /// the nodes `older` does not have; ascending. Chunks a patch shared
    /// between the two are skipped unread, so after a small write this
    /// compares the few chunks the write made again. None past `most`.
    pub fn changed_since(&self, older: &Rows, most: usize) -> Option<Vec<u32>> {
        let mut changed = Vec::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            let lo = c * CHUNK;
            let hi = (lo + CHUNK).min(self.nodes);
            let old = older.chunks.get(c);
            if old.is_some_and(|old| Arc::ptr_eq(old, chunk)) {
                continue;
            }
            for u in lo..hi {
                let local = u - lo;
                let same = old.is_some_and(|old| {
                    u < older.nodes && {
                        let (mine, theirs) = (chunk.row(local), old.row(local));
                        chunk.targets[mine.clone()] == old.targets[theirs.clone()]
                            && chunk.weights[mine] == old.weights[theirs]
                    }
                });
                if !same {
                    changed.push(u as u32);
                    if changed.len() > most {
                        return None;
                    }
                }
            }
        }
        Some(changed)
    }

    pub fn arc_count(&self) -> usize {
        self.bases.last().copied().unwrap_or(0)
    }

    fn at(&self, v: usize) -> (&Chunk, usize) {
        (&self.chunks[v >> CHUNK_BITS], v & (CHUNK - 1))
    }

    pub fn targets(&self, v: usize) -> &[u32] {
        let (chunk, local) = self.at(v);
        &chunk.targets[chunk.row(local)]
    }

    pub fn weights(&self, v: usize) -> &[f64] {
        let (chunk, local) = self.at(v);
        &chunk.weights[chunk.row(local)]
    }

    /// The number of v's first arc among all arcs; `first_arc(node_count())`
    /// is the number of arcs.
    pub fn first_arc(&self, v: usize) -> usize {
        if v == self.nodes {
            return self.arc_count();
        }
        let (chunk, local) = self.at(v);
        self.bases[v >> CHUNK_BITS] + chunk.offsets[local]
    }
}

fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// `count` values of `N` little-endian bytes each, read in blocks.
fn read_array<T, const N: usize>(input: &mut impl Read, count: usize, decode: fn([u8; N]) -> T) -> io::Result<Vec<T>> {
    const BLOCK: usize = 1 << 16;
    let mut values = Vec::with_capacity(count.min(BLOCK));
    let mut buffer = vec![0u8; BLOCK * N];
    let mut left = count;
    while left > 0 {
        let take = left.min(BLOCK);
        let bytes = &mut buffer[..take * N];
        input.read_exact(bytes)?;
        values.extend(bytes.chunks_exact(N).map(|b| {
            let mut value = [0; N];
            value.copy_from_slice(b);
            decode(value)
        }));
        left -= take;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parallel_arcs_merge_and_rows_are_sorted() {
        let rows = Rows::build(3, &[(0, 2, 1.0), (0, 1, 2.0), (0, 2, 0.5), (2, 0, 1.0)], true);
        assert_eq!(rows.targets(0), &[1, 2]);
        assert_eq!(rows.weights(0), &[2.0, 1.5]);
        assert!(rows.targets(1).is_empty());
        assert_eq!(rows.targets(2), &[0]);
        assert_eq!(rows.arc_count(), 3);
        let unweighted = Rows::build(3, &[(0, 2, 7.0), (0, 2, 0.5)], false);
        assert_eq!(unweighted.weights(0), &[1.0]);
    }

    proptest! {
        /// Patching the rows of some nodes (and adding nodes) gives what a
        /// build from the new arcs gives.
        #[test]
        fn a_patch_equals_a_build(
            arcs in proptest::collection::vec((0..12u32, 0..12u32, 0.0..4.0f64), 0..80),
            changed in proptest::collection::btree_set(0..16u32, 0..6),
            new_arcs in proptest::collection::vec((0..16u32, 0..16u32, 0.0..4.0f64), 0..30),
            weighted in any::<bool>(),
        ) {
            let old = Rows::build(12, &arcs, weighted);
            // The new graph: the changed nodes lose their arcs and take the new
            // ones from them; nodes 12..16 are new.
            let mut now: Vec<(u32, u32, f64)> = arcs.iter().copied().filter(|(u, _, _)| !changed.contains(u)).collect();
            now.extend(new_arcs.iter().copied().filter(|(u, _, _)| changed.contains(u)));
            let mut replaced: BTreeMap<u32, Vec<(u32, f64)>> = changed.iter().map(|&u| (u, Vec::new())).collect();
            for &(u, v, w) in &now {
                if let Some(row) = replaced.get_mut(&u) {
                    row.push((v, w));
                }
            }
            prop_assert_eq!(old.patched(16, &mut replaced, weighted), Rows::build(16, &now, weighted));
        }

        /// The same across chunks: a patch shares the chunks it leaves alone,
        /// remakes the others (the last old one growing into new nodes), and
        /// numbers arcs across all of them as a build does.
        #[test]
        fn a_patch_across_chunks_equals_a_build(
            arcs in proptest::collection::vec((0..(CHUNK + 100) as u32, 0..(CHUNK + 100) as u32, 0.0..4.0f64), 0..300),
            changed in proptest::collection::btree_set(0..(2 * CHUNK + 5) as u32, 0..4),
            seed in any::<u64>(),
        ) {
            let (old_n, n) = (CHUNK + 100, 2 * CHUNK + 5);
            let old = Rows::build(old_n, &arcs, true);
            let mut now: Vec<(u32, u32, f64)> = arcs.iter().copied().filter(|(u, _, _)| !changed.contains(u)).collect();
            for (i, &u) in changed.iter().enumerate() {
                now.push((u, ((seed >> i) % n as u64) as u32, 0.5));
            }
            let mut replaced: BTreeMap<u32, Vec<(u32, f64)>> = changed.iter().map(|&u| (u, Vec::new())).collect();
            for &(u, v, w) in &now {
                if let Some(row) = replaced.get_mut(&u) {
                    row.push((v, w));
                }
            }
            let patched = old.patched(n, &mut replaced, true);
            let built = Rows::build(n, &now, true);
            for v in 0..=n {
                prop_assert_eq!(patched.first_arc(v), built.first_arc(v));
            }
            prop_assert_eq!(&patched, &built);
            let shared = (0..old_n / CHUNK).filter(|&c| Arc::ptr_eq(&patched.chunks[c], &old.chunks[c])).count();
            let touched = (0..old_n / CHUNK).filter(|&c| changed.iter().any(|&u| u as usize / CHUNK == c)).count();
            prop_assert_eq!(shared, old_n / CHUNK - touched);
        }
    }
}
