//! The measures every stage analysis shares, a leaf below `stage` and
//! `virtual_integration` so that neither needs the other for them: gates,
//! shares, cosines, and the segment mixes of sets of members.

use crate::{
    model::Date,
    network::{Ix, Network},
};

/// A necessary condition of a stage: its figure against its limit. A stage
/// with an unmet gate is ruled out whatever its score.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub name: &'static str,
    pub value: f64,
    /// The floor, or the ceiling when `at_most`.
    pub limit: f64,
    pub at_most: bool,
    pub met: bool,
    /// What the figure is, in words.
    pub meaning: &'static str,
}

impl Gate {
    pub fn at_least(name: &'static str, value: f64, floor: f64, meaning: &'static str) -> Gate {
        Gate {
            name,
            value,
            limit: floor,
            at_most: false,
            met: value >= floor,
            meaning,
        }
    }

    pub fn at_most(name: &'static str, value: f64, ceiling: f64, meaning: &'static str) -> Gate {
        Gate {
            name,
            value,
            limit: ceiling,
            at_most: true,
            met: value <= ceiling,
            meaning,
        }
    }

    /// "place_interaction 0.02 is below its floor 0.30 (ties between ...)".
    pub fn describe(&self) -> String {
        let (relation, bound) = match (self.at_most, self.met) {
            (false, false) => ("is below", "floor"),
            (false, true) => ("reaches", "floor"),
            (true, false) => ("is above", "ceiling"),
            (true, true) => ("is within", "ceiling"),
        };
        format!(
            "{} {} {relation} its {bound} {} ({})",
            self.name,
            round(self.value),
            round(self.limit),
            self.meaning
        )
    }
}

/// Two decimals, or three significant digits for small figures (p-values).
fn round(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("{x:.1e}")
    } else {
        format!("{x:.2}")
    }
}

pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms = (a.iter().map(|x| x * x).sum::<f64>() * b.iter().map(|x| x * x).sum::<f64>()).sqrt();
    if norms == 0.0 {
        0.0
    } else {
        (dot / norms).min(1.0)
    }
}

/// Members performing each segment, on `as_of` (today when None).
pub fn segment_mix(network: &Network, members: impl Iterator<Item = Ix>, as_of: Option<Date>) -> [f64; 8] {
    let mut mix = [0.0; 8];
    for actor in members.filter_map(|m| network.actor(m)) {
        for segment in network.attributes_at(actor, as_of).segments.iter() {
            mix[segment as usize] += 1.0;
        }
    }
    mix
}

/// 1 − the mean pairwise cosine of the places' segment mixes; 0 with fewer
/// than two places that perform any segment.
pub fn distinctness(mixes: &[[f64; 8]]) -> f64 {
    let mixes: Vec<&[f64; 8]> = mixes.iter().filter(|m| m.iter().any(|x| *x > 0.0)).collect();
    if mixes.len() < 2 {
        return 0.0;
    }
    let (mut sum, mut pairs) = (0.0, 0usize);
    for i in 0..mixes.len() {
        for j in i + 1..mixes.len() {
            sum += cosine(mixes[i], mixes[j]);
            pairs += 1;
        }
    }
    1.0 - sum / pairs as f64
}

/// The cosine of two sparse vectors sorted by index.
pub fn sparse_cosine(a: &[(usize, f64)], b: &[(usize, f64)]) -> f64 {
    let (mut i, mut j, mut dot) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                dot += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    let norm = |v: &[(usize, f64)]| v.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
    let norms = norm(a) * norm(b);
    if norms == 0.0 {
        0.0
    } else {
        (dot / norms).min(1.0)
    }
}
