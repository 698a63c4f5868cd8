//! The figures of economic complexity on a location × activity matrix, with
//! the Growth Lab's conventions (`ecomplexity` 0.5.3, the Python package the
//! Atlas of Economic Complexity is computed with): RCA and M, diversity and
//! ubiquity, proximity, density, ECI and PCI, COI and COG. Formulas and
//! where other packages differ: docs/relatedness.md.
//!
//! Every figure is computed in the order of operations `ecomplexity` uses,
//! so that undefined cases come out undefined (NaN here, absent on the wire)
//! where it gives NaN. The one deliberate difference: when the second
//! eigenvalue is not separated from its neighbours the eigenvector is not
//! determined (LAPACK returns any vector of the eigenspace), and ECI, PCI,
//! COI and COG are undefined here instead of arbitrary.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::analysis::Cancelled;

/// Asked between rows of the O(C·P²) work: stop when cancelled.
pub type Check<'a> = &'a dyn Fn() -> Result<(), Cancelled>;

/// Rows of density and COG between two checks.
const ROWS_PER_CHECK: usize = 64;

/// Values of locations (rows) × activities (columns), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Values {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f64>,
}

impl Values {
    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.values[r * self.cols + c]
    }
}

/// Every figure of one matrix. Matrices are row-major (locations × activities,
/// or activities × activities for `proximity`); NaN marks an undefined value.
#[derive(Clone, Debug)]
pub struct Complexity {
    pub rows: usize,
    pub cols: usize,
    pub rca: Vec<f64>,
    pub mcp: Vec<bool>,
    /// Activities each location is specialised in (k_c,0).
    pub diversity: Vec<f64>,
    /// Locations specialised in each activity (k_p,0).
    pub ubiquity: Vec<f64>,
    /// φ_pp′ = C_pp′ / max(k_p, k_p′), 1 on the diagonal.
    pub proximity: Vec<f64>,
    /// ω_cp: the share of p's proximity that leads to activities c holds.
    pub density: Vec<f64>,
    pub eci: Vec<f64>,
    pub pci: Vec<f64>,
    pub coi: Vec<f64>,
    pub cog: Vec<f64>,
}

impl Complexity {
    pub fn at(&self, matrix: &[f64], r: usize, c: usize) -> f64 {
        matrix[r * self.cols + c]
    }
}

/// The relative gap below which the second eigenvalue counts as tied with a
/// neighbour, and the eigenvector as undetermined.
const EIGEN_GAP: f64 = 1e-10;

/// All figures of `values`, M being RCA ≥ `threshold`. A row or column
/// whose total is zero takes no part (as `ecomplexity` drops it): its
/// figures are NaN and its M false. `check` is asked between rows.
pub fn complexity(values: &Values, threshold: f64, check: Check) -> Result<Complexity, Cancelled> {
    let rows: Vec<usize> = (0..values.rows)
        .filter(|&r| (0..values.cols).map(|c| values.at(r, c)).sum::<f64>() > 0.0)
        .collect();
    let cols: Vec<usize> = (0..values.cols)
        .filter(|&c| (0..values.rows).map(|r| values.at(r, c)).sum::<f64>() > 0.0)
        .collect();
    if rows.len() == values.rows && cols.len() == values.cols {
        return of_positive_totals(values, threshold, check);
    }
    let kept = Values {
        rows: rows.len(),
        cols: cols.len(),
        values: rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| (r, c)))
            .map(|(r, c)| values.at(r, c))
            .collect(),
    };
    let inner = of_positive_totals(&kept, threshold, check)?;
    let (n, k) = (values.rows, values.cols);
    let spread = |from: &[f64], row_of: &[usize], col_of: &[usize], width: usize, height: usize| {
        let mut out = vec![f64::NAN; height * width];
        for (i, &r) in row_of.iter().enumerate() {
            for (j, &c) in col_of.iter().enumerate() {
                out[r * width + c] = from[i * col_of.len() + j];
            }
        }
        out
    };
    let per = |from: &[f64], index: &[usize], len: usize| {
        let mut out = vec![f64::NAN; len];
        for (i, &at) in index.iter().enumerate() {
            out[at] = from[i];
        }
        out
    };
    let mut mcp = vec![false; n * k];
    for (i, &r) in rows.iter().enumerate() {
        for (j, &c) in cols.iter().enumerate() {
            mcp[r * k + c] = inner.mcp[i * cols.len() + j];
        }
    }
    Ok(Complexity {
        rows: n,
        cols: k,
        rca: spread(&inner.rca, &rows, &cols, k, n),
        mcp,
        diversity: per(&inner.diversity, &rows, n),
        ubiquity: per(&inner.ubiquity, &cols, k),
        proximity: spread(&inner.proximity, &cols, &cols, k, k),
        density: spread(&inner.density, &rows, &cols, k, n),
        eci: per(&inner.eci, &rows, n),
        pci: per(&inner.pci, &cols, k),
        coi: per(&inner.coi, &rows, n),
        cog: spread(&inner.cog, &rows, &cols, k, n),
    })
}

/// All figures of a matrix whose rows and columns all have a positive total.
fn of_positive_totals(values: &Values, threshold: f64, check: Check) -> Result<Complexity, Cancelled> {
    let (n, k) = (values.rows, values.cols);
    let rca = rca(values);
    let mcp: Vec<bool> = rca.iter().map(|r| !r.is_nan() && *r >= threshold).collect();
    let m = |c: usize, p: usize| if mcp[c * k + p] { 1.0 } else { 0.0 };
    let diversity: Vec<f64> = (0..n).map(|c| (0..k).map(|p| m(c, p)).sum()).collect();
    let ubiquity: Vec<f64> = (0..k).map(|p| (0..n).map(|c| m(c, p)).sum()).collect();

    let (eci_raw, pci_raw) = eigenvectors(&mcp, n, k, &diversity, &ubiquity);

    check()?;
    let proximity = proximity(&mcp, n, k, &ubiquity);
    let density = density(&mcp, n, k, &proximity, check)?;

    // COI and COG on the signed eigenvectors, before standardising (as
    // `calc_coi_cog` runs before the normalisation).
    let coi_raw: Vec<f64> = (0..n)
        .map(|c| (0..k).map(|p| density[c * k + p] * (1.0 - m(c, p)) * pci_raw[p]).sum())
        .collect();
    let row_sums: Vec<f64> = (0..k).map(|p| proximity[p * k..(p + 1) * k].iter().sum()).collect();
    let mut cog = vec![0.0; n * k];
    for c in 0..n {
        if c % ROWS_PER_CHECK == 0 {
            check()?;
        }
        for p in 0..k {
            let reach: f64 = (0..k)
                .map(|q| (1.0 - m(c, q)) * proximity[q * k + p] * (pci_raw[q] / row_sums[q]))
                .sum();
            cog[c * k + p] = (1.0 - m(c, p)) * reach;
        }
    }

    let (eci_mean, eci_std) = (mean(&eci_raw), std(&eci_raw));
    let pci = pci_raw.iter().map(|x| (x - eci_mean) / eci_std).collect();
    for value in &mut cog {
        *value /= eci_std;
    }
    let eci = eci_raw.iter().map(|x| (x - eci_mean) / eci_std).collect();
    let (coi_mean, coi_std) = (mean(&coi_raw), std(&coi_raw));
    let coi = coi_raw.iter().map(|x| (x - coi_mean) / coi_std).collect();

    Ok(Complexity {
        rows: n,
        cols: k,
        rca,
        mcp,
        diversity,
        ubiquity,
        proximity,
        density,
        eci,
        pci,
        coi,
        cog,
    })
}

/// RCA, M, diversity and ubiquity alone, the rest NaN: what whether a
/// location is specialised needs, without the O(P³) eigenvectors. Equal
/// to [`complexity`]'s for those four (a row or column with no value gives
/// NaN RCA and no M either way).
pub fn specialisations(values: &Values, threshold: f64) -> Complexity {
    let (n, k) = (values.rows, values.cols);
    let rca = rca(values);
    let mcp: Vec<bool> = rca.iter().map(|r| !r.is_nan() && *r >= threshold).collect();
    let count = |cells: &mut dyn Iterator<Item = usize>| cells.filter(|&i| mcp[i]).count() as f64;
    let diversity = (0..n).map(|c| count(&mut (0..k).map(|p| c * k + p))).collect();
    let ubiquity = (0..k).map(|p| count(&mut (0..n).map(|c| c * k + p))).collect();
    Complexity {
        rows: n,
        cols: k,
        rca,
        mcp,
        diversity,
        ubiquity,
        proximity: vec![f64::NAN; k * k],
        density: vec![f64::NAN; n * k],
        eci: vec![f64::NAN; n],
        pci: vec![f64::NAN; k],
        coi: vec![f64::NAN; n],
        cog: vec![f64::NAN; n * k],
    }
}

/// Balassa's RCA: (x_cp / x_c) / (x_p / x).
fn rca(values: &Values) -> Vec<f64> {
    let (n, k) = (values.rows, values.cols);
    let row_totals: Vec<f64> = (0..n).map(|c| (0..k).map(|p| values.at(c, p)).sum()).collect();
    let col_totals: Vec<f64> = (0..k).map(|p| (0..n).map(|c| values.at(c, p)).sum()).collect();
    let total: f64 = col_totals.iter().sum();
    let mut rca = Vec::with_capacity(n * k);
    for (c, row_total) in row_totals.iter().enumerate() {
        for (p, col_total) in col_totals.iter().enumerate() {
            rca.push((values.at(c, p) / row_total) / (col_total / total));
        }
    }
    rca
}

/// φ_pp′ = min(C_pp′ / k_p′, C_pp′ / k_p), C the co-occurrence counts.
fn proximity(mcp: &[bool], n: usize, k: usize, ubiquity: &[f64]) -> Vec<f64> {
    let mut together = vec![0.0; k * k];
    let mut held = Vec::with_capacity(k);
    for c in 0..n {
        held.clear();
        held.extend((0..k).filter(|p| mcp[c * k + p]));
        for &a in &held {
            for &b in &held {
                together[a * k + b] += 1.0;
            }
        }
    }
    let mut phi = vec![0.0; k * k];
    for a in 0..k {
        for b in 0..k {
            let both = together[a * k + b];
            phi[a * k + b] = nan_min(both / ubiquity[b], both / ubiquity[a]);
        }
    }
    phi
}

/// ω_cp = Σ_p′ M_cp′ φ_pp′ / Σ_p′ φ_pp′ (the denominator skipping NaN, as
/// `np.nansum` does).
fn density(mcp: &[bool], n: usize, k: usize, phi: &[f64], check: Check) -> Result<Vec<f64>, Cancelled> {
    let sums: Vec<f64> = (0..k)
        .map(|p| phi[p * k..(p + 1) * k].iter().filter(|x| !x.is_nan()).sum())
        .collect();
    let mut density = vec![0.0; n * k];
    for c in 0..n {
        if c % ROWS_PER_CHECK == 0 {
            check()?;
        }
        for p in 0..k {
            let near: f64 = (0..k)
                .map(|q| {
                    if mcp[c * k + q] {
                        phi[p * k + q]
                    } else {
                        0.0 * phi[p * k + q]
                    }
                })
                .sum();
            density[c * k + p] = near / sums[p];
        }
    }
    Ok(density)
}

/// The signed, unstandardised ECI (per location) and PCI (per activity):
/// the eigenvector of M̃_pp′ = Σ_c M_cp M_cp′ / (k_c k_p) for its second
/// largest eigenvalue, and its image k_c = Σ_p M_cp k_p / k_c; the sign
/// makes ECI correlate positively with diversity.
fn eigenvectors(mcp: &[bool], n: usize, k: usize, diversity: &[f64], ubiquity: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let undefined = (vec![f64::NAN; n], vec![f64::NAN; k]);
    let rows: Vec<usize> = (0..n).filter(|&c| diversity[c] != 0.0).collect();
    let cols: Vec<usize> = (0..k).filter(|&p| ubiquity[p] != 0.0).collect();
    // `ecomplexity` fails over to NaN when exactly one row or column has no
    // specialisation (it cannot iterate a 0-d mask), and cannot take a
    // second eigenvalue of fewer than two activities.
    if n - rows.len() == 1 || k - cols.len() == 1 || cols.len() < 2 || rows.is_empty() {
        return undefined;
    }
    // M̃ = D_p⁻¹ Mᵀ D_c⁻¹ M is similar to the symmetric
    // S = D_p^-½ Mᵀ D_c⁻¹ M D_p^-½: same eigenvalues, and v = D_p^-½ u.
    let size = cols.len();
    let mut s = DMatrix::<f64>::zeros(size, size);
    for &c in &rows {
        let held: Vec<usize> = (0..size).filter(|&j| mcp[c * k + cols[j]]).collect();
        let weight = 1.0 / diversity[c];
        for &a in &held {
            for &b in &held {
                s[(a, b)] += weight;
            }
        }
    }
    for a in 0..size {
        for b in 0..size {
            s[(a, b)] /= (ubiquity[cols[a]] * ubiquity[cols[b]]).sqrt();
        }
    }
    let eigen = SymmetricEigen::new(s);
    let mut order: Vec<usize> = (0..size).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let (first, second) = (eigen.eigenvalues[order[0]], eigen.eigenvalues[order[1]]);
    let third = order.get(2).map(|&i| eigen.eigenvalues[i]);
    let scale = first.abs().max(f64::MIN_POSITIVE);
    if (first - second) / scale < EIGEN_GAP || third.is_some_and(|t| (second - t) / scale < EIGEN_GAP) {
        return undefined;
    }
    let u = eigen.eigenvectors.column(order[1]);
    let mut kp = vec![f64::NAN; k];
    for (j, &p) in cols.iter().enumerate() {
        kp[p] = u[j] / ubiquity[p].sqrt();
    }
    let mut kc = vec![f64::NAN; n];
    for &c in &rows {
        kc[c] = (0..k).filter(|&p| mcp[c * k + p]).map(|p| kp[p]).sum::<f64>() / diversity[c];
    }
    let valid_diversity: Vec<f64> = rows.iter().map(|&c| diversity[c]).collect();
    let valid_kc: Vec<f64> = rows.iter().map(|&c| kc[c]).collect();
    let sign = np_sign(correlation(&valid_diversity, &valid_kc));
    (
        kc.iter().map(|x| sign * x).collect(),
        kp.iter().map(|x| sign * x).collect(),
    )
}

/// Pearson's r; NaN for fewer than two values or no variance (as
/// `np.corrcoef` gives).
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// `np.sign`: −1, 0 or 1, NaN for NaN (Rust's `signum` gives ±1 for 0).
fn np_sign(x: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x.signum()
    }
}

/// The smaller of two, NaN when either is (`np.minimum`).
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The population standard deviation (NumPy's `std`, ddof 0).
pub(crate) fn std(values: &[f64]) -> f64 {
    let m = mean(values);
    (values.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / values.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    //! Every figure against `ecomplexity` 0.5.3 and, where the conventions
    //! agree, `economic-complexity` 0.3.0, on the matrices of
    //! tests/fixtures/relatedness (made by the script beside them).

    use super::*;
    use serde_json::Value;

    const CASES: [&str; 6] = [
        "nested",
        "random",
        "random_large",
        "zero_totals",
        "one_holds_everything",
        "heavy_tailed",
    ];

    fn fixture(case: &str) -> Value {
        let path = format!("{}/tests/fixtures/relatedness/{case}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn numbers(value: &Value) -> Vec<f64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect()
    }

    /// Equal to 1e-9 relative (absolute below 1), NaN where the reference is.
    fn assert_close(case: &str, figure: &str, ours: &[f64], reference: &[f64]) {
        assert_eq!(ours.len(), reference.len(), "{case}: {figure} length");
        for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
            if b.is_nan() {
                assert!(a.is_nan(), "{case}: {figure}[{i}] is {a}, ecomplexity has NaN");
                continue;
            }
            let scale = b.abs().max(1.0);
            assert!(
                (a - b).abs() <= 1e-9 * scale,
                "{case}: {figure}[{i}] is {a}, the reference {b}"
            );
        }
    }

    fn of(case: &str) -> (Value, Complexity) {
        let reference = fixture(case);
        let values = Values {
            rows: reference["rows"].as_u64().unwrap() as usize,
            cols: reference["cols"].as_u64().unwrap() as usize,
            values: numbers(&reference["values"]),
        };
        let figures = complexity(&values, 1.0, &|| Ok(())).unwrap();
        (reference, figures)
    }

    #[test]
    fn every_figure_equals_ecomplexity() {
        for case in CASES {
            let (reference, ours) = of(case);
            let gl = &reference["ecomplexity"];
            let mcp: Vec<f64> = ours.mcp.iter().map(|m| if *m { 1.0 } else { 0.0 }).collect();
            let gl_mcp: Vec<f64> = numbers(&gl["mcp"])
                .iter()
                .map(|m| if m.is_nan() { 0.0 } else { *m })
                .collect();
            assert_close(case, "mcp", &mcp, &gl_mcp);
            for (figure, ours) in [
                ("rca", &ours.rca),
                ("density", &ours.density),
                ("cog", &ours.cog),
                ("diversity", &ours.diversity),
                ("ubiquity", &ours.ubiquity),
                ("eci", &ours.eci),
                ("pci", &ours.pci),
                ("coi", &ours.coi),
            ] {
                assert_close(case, figure, ours, &numbers(&gl[figure]));
            }
            // Proximity among the activities ecomplexity keeps.
            let kept: Vec<usize> = gl["proximity_activities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()[1..].parse().unwrap())
                .collect();
            let phi: Vec<f64> = kept
                .iter()
                .flat_map(|&a| kept.iter().map(move |&b| (a, b)))
                .map(|(a, b)| ours.proximity[a * ours.cols + b])
                .collect();
            assert_close(case, "proximity", &phi, &numbers(&gl["proximity"]));
        }
    }

    #[test]
    fn proximity_and_density_agree_with_economic_complexity_where_the_conventions_do() {
        for case in CASES {
            let (reference, ours) = of(case);
            let dw = &reference["economic_complexity"];
            let index = |key: &str| -> Vec<usize> {
                dw[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap()[1..].parse().unwrap())
                    .collect()
            };
            let (locations, activities) = (index("locations"), index("activities"));
            // Its proximity has 0 on the diagonal where ecomplexity's has 1.
            let phi: Vec<f64> = activities
                .iter()
                .flat_map(|&a| activities.iter().map(move |&b| (a, b)))
                .map(|(a, b)| if a == b { 0.0 } else { ours.proximity[a * ours.cols + b] })
                .collect();
            // An activity no location is specialised in has 0/0 there and NaN here.
            let dw_phi = numbers(&dw["proximity"]);
            let comparable: Vec<(f64, f64)> = phi
                .iter()
                .zip(&dw_phi)
                .filter(|(_, b)| !b.is_nan())
                .map(|(a, b)| (*a, *b))
                .collect();
            let (a, b): (Vec<f64>, Vec<f64>) = comparable.into_iter().unzip();
            assert_close(case, "economic-complexity proximity", &a, &b);
            let density: Vec<f64> = locations
                .iter()
                .flat_map(|&c| activities.iter().map(move |&p| (c, p)))
                .map(|(c, p)| ours.density[c * ours.cols + p])
                .collect();
            let dw_density = numbers(&dw["density_with_ecomplexity_proximity"]);
            assert_close(case, "economic-complexity density", &density, &dw_density);
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn matrix() -> impl Strategy<Value = Values> {
        (2usize..8, 2usize..8).prop_flat_map(|(rows, cols)| {
            proptest::collection::vec(0u32..500, rows * cols).prop_map(move |cells| Values {
                rows,
                cols,
                values: cells.into_iter().map(f64::from).collect(),
            })
        })
    }

    proptest! {
        /// A new cluster holding only a new industry changes every other
        /// RCA through the grand total alone: RCA′ = RCA · (x + v) / x;
        /// it is not specialised in anything else, nor anyone else in its
        /// industry.
        #[test]
        fn an_unrelated_industry_in_a_new_cluster_moves_rca_only_through_the_total(
            m in matrix(), v in 1u32..10_000
        ) {
            let before = complexity(&m, 1.0, &|| Ok(())).unwrap();
            let total: f64 = m.values.iter().sum();
            prop_assume!(total > 0.0);
            let cols = m.cols + 1;
            let mut grown = vec![0.0; (m.rows + 1) * cols];
            for r in 0..m.rows {
                for c in 0..m.cols {
                    grown[r * cols + c] = m.at(r, c);
                }
            }
            grown[m.rows * cols + m.cols] = f64::from(v);
            let after = complexity(&Values { rows: m.rows + 1, cols, values: grown }, 1.0, &|| Ok(())).unwrap();
            let factor = (total + f64::from(v)) / total;
            for r in 0..m.rows {
                for c in 0..m.cols {
                    let (old, new) = (before.rca[r * m.cols + c], after.rca[r * cols + c]);
                    if old.is_nan() {
                        prop_assert!(new.is_nan());
                    } else {
                        prop_assert!((new - old * factor).abs() <= 1e-12 * new.abs().max(1.0), "{} vs {}", new, old * factor);
                    }
                }
                prop_assert!(after.rca[r * cols + m.cols] == 0.0 || after.rca[r * cols + m.cols].is_nan());
            }
            for c in 0..m.cols {
                prop_assert!(!after.mcp[m.rows * cols + c]);
            }
            prop_assert!(after.mcp[m.rows * cols + m.cols]);
        }

        /// Proximity is symmetric, 1 on the diagonal of an industry someone
        /// is specialised in, and within [0, 1]; density is within [0, 1].
        #[test]
        fn proximity_and_density_stay_in_their_ranges(m in matrix()) {
            let f = complexity(&m, 1.0, &|| Ok(())).unwrap();
            let k = f.cols;
            for a in 0..k {
                for b in 0..k {
                    let (x, y) = (f.proximity[a * k + b], f.proximity[b * k + a]);
                    prop_assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()));
                    prop_assert!(x.is_nan() || (0.0..=1.0).contains(&x));
                }
                if f.ubiquity[a] > 0.0 {
                    prop_assert_eq!(f.proximity[a * k + a], 1.0);
                }
            }
            for d in f.density.iter().filter(|d| !d.is_nan()) {
                prop_assert!((0.0..=1.0 + 1e-12).contains(d));
            }
        }
    }
}
