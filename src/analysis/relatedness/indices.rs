//! The classic specialisation and concentration indices of economic
//! geography, with the formulas of R's EconGeo (Balland): per location the
//! Krugman specialisation index, Herfindahl and Shannon entropy; per
//! activity the Hoover index and Krugman's locational Gini. Formulas and
//! where EconGeo rounds or scales: docs/relatedness.md.

use super::complexity::Values;

/// A location's indices; NaN for a location with no value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Specialisation {
    /// Σ_p |x_cp/x_c − x_p/x|: 0 when the location's mix is the whole's,
    /// up to 2 (EconGeo `krugman_index`).
    pub krugman: f64,
    /// Σ_p (x_cp/x_c)²: 1 for a location in one activity.
    pub herfindahl: f64,
    /// −Σ_p s log₂ s with s = x_cp/x_c: 0 for one activity, log₂ n for n
    /// activities in equal parts (EconGeo `entropy`, without its rounding).
    pub entropy: f64,
}

/// An activity's indices; NaN for an activity with no value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Concentration {
    /// ½ Σ_c |x_cp/x_p − x_c/x|: the share of the activity that would have
    /// to move for it to be spread as the whole is, 0 to 1 (EconGeo
    /// `hoover_index` against the locations' totals, as a fraction).
    pub hoover: f64,
    /// Krugman's locational Gini: locations ordered by x_cp/x_c, the area
    /// between the activity's cumulative share and the locations'; 0 when
    /// spread as the whole is, at most ½ (EconGeo `locational_gini`).
    pub locational_gini: f64,
}

pub fn specialisation(values: &Values) -> Vec<Specialisation> {
    let (col_totals, total) = col_totals(values);
    (0..values.rows)
        .map(|c| {
            let row: Vec<f64> = (0..values.cols).map(|p| values.at(c, p)).collect();
            let row_total: f64 = row.iter().sum();
            if row_total <= 0.0 {
                return Specialisation {
                    krugman: f64::NAN,
                    herfindahl: f64::NAN,
                    entropy: f64::NAN,
                };
            }
            let shares = row.iter().map(|x| x / row_total);
            let krugman = shares
                .clone()
                .zip(&col_totals)
                .map(|(s, t)| (s - t / total).abs())
                .sum();
            let herfindahl = shares.clone().map(|s| s * s).sum();
            // 0 − sum, not −sum: one activity gives 0, not −0.
            let entropy = 0.0 - shares.filter(|s| *s > 0.0).map(|s| s * s.log2()).sum::<f64>();
            Specialisation {
                krugman,
                herfindahl,
                entropy,
            }
        })
        .collect()
}

pub fn concentration(values: &Values) -> Vec<Concentration> {
    let (col_totals, total) = col_totals(values);
    let row_totals: Vec<f64> = (0..values.rows)
        .map(|c| (0..values.cols).map(|p| values.at(c, p)).sum())
        .collect();
    (0..values.cols)
        .map(|p| {
            let col_total = col_totals[p];
            if col_total <= 0.0 {
                return Concentration {
                    hoover: f64::NAN,
                    locational_gini: f64::NAN,
                };
            }
            let hoover = 0.5
                * (0..values.rows)
                    .map(|c| (values.at(c, p) / col_total - row_totals[c] / total).abs())
                    .sum::<f64>();
            Concentration {
                hoover,
                locational_gini: locational_gini(values, p, &row_totals, total),
            }
        })
        .collect()
}

/// Locations with a value, ordered by the activity's share of their total
/// (ascending; ties by index so the result does not depend on the sort);
/// the Lorenz curve of the activity against the locations' totals, and
/// half the signed area between it and the diagonal, by the trapezoid sums
/// EconGeo uses.
fn locational_gini(values: &Values, p: usize, row_totals: &[f64], total: f64) -> f64 {
    let mut order: Vec<usize> = (0..values.rows).filter(|&c| row_totals[c] > 0.0).collect();
    let intensity = |c: usize| values.at(c, p) / (row_totals[c] / total);
    order.sort_by(|&a, &b| intensity(a).total_cmp(&intensity(b)).then(a.cmp(&b)));
    let mut cumulative_activity = Vec::with_capacity(order.len());
    let mut cumulative_size = Vec::with_capacity(order.len());
    let (mut a, mut s) = (0.0, 0.0);
    for &c in &order {
        a += values.at(c, p);
        s += row_totals[c] / total;
        cumulative_activity.push(a);
        cumulative_size.push(s);
    }
    let (a_max, s_max) = (a, s);
    let n = order.len();
    let mut area = 0.0;
    for i in 0..n.saturating_sub(1) {
        area += cumulative_activity[i + 1] / a_max * (cumulative_size[i] / s_max)
            - cumulative_activity[i] / a_max * (cumulative_size[i + 1] / s_max);
    }
    area / 2.0
}

fn col_totals(values: &Values) -> (Vec<f64>, f64) {
    let totals: Vec<f64> = (0..values.cols)
        .map(|p| (0..values.rows).map(|c| values.at(c, p)).sum())
        .collect();
    let total = totals.iter().sum();
    (totals, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(rows: usize, cols: usize, values: &[f64]) -> Values {
        Values {
            rows,
            cols,
            values: values.to_vec(),
        }
    }

    #[test]
    fn a_location_with_the_whole_mix_is_not_specialised_and_one_in_a_single_activity_is() {
        // Row 0 holds the whole's mix (1:1:2), row 1 only the first activity.
        let m = values(3, 3, &[10.0, 10.0, 20.0, 30.0, 0.0, 0.0, 0.0, 30.0, 60.0]);
        let s = specialisation(&m);
        let whole = [40.0 / 160.0, 40.0 / 160.0, 80.0 / 160.0];
        let expected_krugman_1 = (1.0 - whole[0]) + whole[1] + whole[2];
        assert!((s[1].krugman - expected_krugman_1).abs() < 1e-12);
        assert_eq!(s[1].herfindahl, 1.0);
        assert_eq!(s[1].entropy, 0.0);
        assert!((s[0].entropy - 1.5).abs() < 1e-12, "shares ¼ ¼ ½ give 1.5 bits");
    }

    #[test]
    fn an_activity_spread_as_the_whole_has_no_concentration() {
        // Activity 0 is in every location in proportion to its size.
        let m = values(3, 3, &[10.0, 10.0, 0.0, 20.0, 0.0, 20.0, 30.0, 30.0, 0.0]);
        let c = concentration(&m);
        assert!(
            c[0].hoover.abs() < 1e-12 && c[0].locational_gini.abs() < 1e-12,
            "{:?}",
            c[0]
        );
        // Activity 2 is all in the location holding a third of the whole.
        assert!((c[2].hoover - 2.0 / 3.0).abs() < 1e-12, "{:?}", c[2]);
        assert!(c[2].locational_gini > 0.0);
    }

    #[test]
    fn the_locational_gini_matches_econgeo_on_its_documented_example() {
        // EconGeo's example matrix (R/locational.Gini.r), by hand: industry 1
        // is only in region 1, a fifth of the whole, so its Lorenz curve is
        // flat until the last step: (1 − 1/5) / 2.
        let m = values(
            5,
            5,
            &[
                100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 15.0, 5.0, 70.0, 10.0, 0.0, 20.0, 10.0, 20.0, 50.0, 0.0, 25.0, 30.0,
                5.0, 40.0, 0.0, 40.0, 55.0, 5.0, 0.0,
            ],
        );
        let c = concentration(&m);
        let region_one = 100.0 / 500.0;
        assert!(
            (c[0].locational_gini - (1.0 - region_one) / 2.0).abs() < 1e-12,
            "{}",
            c[0].locational_gini
        );
        for figure in &c {
            assert!((0.0..=0.5).contains(&figure.locational_gini), "{figure:?}");
        }
    }
}
