//! Force-directed placement (Fruchterman and Reingold 1991): nodes repel
//! one another, edges pull their ends together, and the moves shrink as the
//! layout cools. Deterministic: the start comes from a seeded generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Positions in [0, 1]² for `n` nodes joined by `edges`.
pub fn force_directed(n: usize, edges: &[(usize, usize)], iterations: usize, seed: u64) -> Vec<(f64, f64)> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![(0.5, 0.5)];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut at: Vec<(f64, f64)> = (0..n).map(|_| (rng.gen::<f64>(), rng.gen::<f64>())).collect();
    // The ideal distance between nodes on a unit square.
    let k = (1.0 / n as f64).sqrt();
    let mut temperature = 0.1;
    let cooling = temperature / iterations.max(1) as f64;
    let mut shift = vec![(0.0f64, 0.0f64); n];
    for _ in 0..iterations {
        shift.iter_mut().for_each(|s| *s = (0.0, 0.0));
        for u in 0..n {
            for v in u + 1..n {
                let (dx, dy) = (at[u].0 - at[v].0, at[u].1 - at[v].1);
                let d2 = (dx * dx + dy * dy).max(1e-9);
                // Repulsion k²/d along the unit vector: k²·(dx, dy)/d².
                let f = k * k / d2;
                shift[u].0 += dx * f;
                shift[u].1 += dy * f;
                shift[v].0 -= dx * f;
                shift[v].1 -= dy * f;
            }
        }
        for &(u, v) in edges {
            let (dx, dy) = (at[u].0 - at[v].0, at[u].1 - at[v].1);
            let d = (dx * dx + dy * dy).sqrt().max(1e-9);
            // Attraction d²/k along the unit vector: d·(dx, dy)/k.
            let f = d / k;
            shift[u].0 -= dx * f;
            shift[u].1 -= dy * f;
            shift[v].0 += dx * f;
            shift[v].1 += dy * f;
        }
        for (p, s) in at.iter_mut().zip(&shift) {
            let length = (s.0 * s.0 + s.1 * s.1).sqrt().max(1e-9);
            let step = length.min(temperature);
            p.0 = (p.0 + s.0 / length * step).clamp(0.0, 1.0);
            p.1 = (p.1 + s.1 / length * step).clamp(0.0, 1.0);
        }
        temperature -= cooling;
    }
    normalise(&mut at);
    at
}

/// Stretches positions to fill [0, 1]² (each axis on its own would distort;
/// one scale keeps the shape).
fn normalise(at: &mut [(f64, f64)]) {
    let (min_x, max_x) = at
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (min_y, max_y) = at
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let span = (max_x - min_x).max(max_y - min_y).max(1e-9);
    for p in at.iter_mut() {
        p.0 = (p.0 - min_x) / span;
        p.1 = (p.1 - min_y) / span;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
        ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
    }

    #[test]
    fn linked_nodes_end_closer_than_unlinked_ones_and_the_layout_is_repeatable() {
        // Two triangles joined by one edge.
        let edges = [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (2, 3)];
        let at = force_directed(6, &edges, 300, 7);
        assert_eq!(at, force_directed(6, &edges, 300, 7));
        let within = distance(at[0], at[1]);
        let across = distance(at[0], at[5]);
        assert!(within < across, "{within} within a triangle, {across} across");
        assert!(at
            .iter()
            .all(|p| (0.0..=1.0).contains(&p.0) && (0.0..=1.0).contains(&p.1)));
    }
}
