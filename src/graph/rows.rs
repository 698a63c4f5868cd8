//! Adjacency in compressed sparse row form, built from arcs in any order or
//! patched from an older copy a few rows at a time.
//!
//! Our own three arrays rather than petgraph's `Csr`: a patch copies the
//! unchanged rows as slices and replaces the rest, which `Csr` (built from
//! a list of sorted edges, or by inserting one edge at a time) cannot do
//! without a triple per arc.

use std::collections::BTreeMap;

/// Node v's arcs are `targets[offsets[v]..offsets[v + 1]]`, by target
/// ascending, each with its weight in `weights`. Parallel arcs are merged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    offsets: Vec<usize>,
    targets: Vec<u32>,
    weights: Vec<f64>,
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
        let mut rows = Rows::with_capacity(n, arcs.len());
        for u in 0..n {
            rows.push_row(&mut unsorted[starts[u]..starts[u + 1]], weighted);
        }
        rows
    }

    fn with_capacity(n: usize, arcs: usize) -> Rows {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Rows {
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
            if self.targets.len() > first && self.targets.last() == Some(&v) {
                if weighted {
                    *self.weights.last_mut().expect("a target has its weight") += w;
                }
            } else {
                self.targets.push(v);
                self.weights.push(w);
            }
        }
        self.offsets.push(self.targets.len());
    }

    /// A copy for `n` nodes (at least as many as these rows have) where each
    /// node in `replaced` gets the row made of its arcs (in the order a
    /// build would meet them) and every other node keeps its row (empty for
    /// a node these rows do not have).
    pub fn patched(&self, n: usize, replaced: &mut BTreeMap<u32, Vec<(u32, f64)>>, weighted: bool) -> Rows {
        let old_n = self.node_count();
        debug_assert!(n >= old_n);
        let added: usize = replaced.values().map(Vec::len).sum();
        let mut rows = Rows::with_capacity(n, self.arc_count() + added);
        let mut copied_from = 0usize;
        for (&u, arcs) in replaced.iter_mut() {
            let u = u as usize;
            // The unchanged rows before u, as one run of each array.
            let upto = u.min(old_n);
            if copied_from < upto {
                rows.copy_rows(self, copied_from, upto);
            }
            for _ in old_n.max(copied_from)..u {
                rows.offsets.push(rows.targets.len());
            }
            rows.push_row(arcs, weighted);
            copied_from = u + 1;
        }
        if copied_from < old_n {
            rows.copy_rows(self, copied_from, old_n);
        }
        while rows.node_count() < n {
            rows.offsets.push(rows.targets.len());
        }
        rows
    }

    /// Appends rows `from..to` of `other` unchanged.
    fn copy_rows(&mut self, other: &Rows, from: usize, to: usize) {
        let (start, end) = (other.offsets[from], other.offsets[to]);
        let shift = self.targets.len() as isize - start as isize;
        self.targets.extend_from_slice(&other.targets[start..end]);
        self.weights.extend_from_slice(&other.weights[start..end]);
        self.offsets.extend(
            other.offsets[from + 1..=to]
                .iter()
                .map(|&o| (o as isize + shift) as usize),
        );
    }

    pub fn node_count(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn arc_count(&self) -> usize {
        self.targets.len()
    }

    pub fn targets(&self, v: usize) -> &[u32] {
        &self.targets[self.offsets[v]..self.offsets[v + 1]]
    }

    pub fn weights(&self, v: usize) -> &[f64] {
        &self.weights[self.offsets[v]..self.offsets[v + 1]]
    }

    /// The number of v's first arc among all arcs; `first_arc(node_count())`
    /// is the number of arcs.
    pub fn first_arc(&self, v: usize) -> usize {
        self.offsets[v]
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * 8 + self.targets.capacity() * 4 + self.weights.capacity() * 8
    }
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
    }
}
