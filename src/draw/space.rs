//! The industry space as SVG, drawn as Hidalgo et al. draw the product
//! space: the maximum spanning tree of proximity (so every industry is
//! placed by its nearest ones) plus every tie at least as strong as a
//! threshold; nodes sized by total employees, coloured by PCI (blue for
//! simple, red for complex, grey where undefined), and one cluster's
//! industries, when asked, ringed.

use std::{collections::BTreeSet, fmt::Write};

use super::{esc, header, label, layout, legend, place, Swatch};

/// An industry of the space.
#[derive(Clone, Debug, PartialEq)]
pub struct Industry {
    pub code: String,
    /// Employees (or firms) in it over every cluster.
    pub total: f64,
    pub pci: Option<f64>,
}

/// How to draw it.
#[derive(Clone, Debug)]
pub struct SpaceDrawing {
    pub title: String,
    /// Ties at least this near are drawn beside the spanning tree.
    pub min_proximity: f64,
    /// A cluster and the industries it is specialised in, ringed.
    pub held: Option<(String, BTreeSet<String>)>,
    /// Industries labelled: the largest.
    pub labels: usize,
}

/// The edges of the maximum spanning tree (forest) of `ties`, by Kruskal.
fn spanning_tree(n: usize, ties: &[(usize, usize, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ties.len()).collect();
    order.sort_by(|&a, &b| ties[b].2.total_cmp(&ties[a].2).then(a.cmp(&b)));
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut v: usize) -> usize {
        while parent[v] != v {
            parent[v] = parent[parent[v]];
            v = parent[v];
        }
        v
    }
    let mut tree = Vec::new();
    for i in order {
        let (a, b) = (root(&mut parent, ties[i].0), root(&mut parent, ties[i].1));
        if a != b {
            parent[a] = b;
            tree.push(i);
        }
    }
    tree
}

/// Blue (PCI −2 and below) through white to red (+2 and above).
fn pci_colour(pci: Option<f64>) -> String {
    let Some(pci) = pci else {
        return "#bab0ac".into();
    };
    let t = ((pci + 2.0) / 4.0).clamp(0.0, 1.0);
    let (low, high) = ((0x4e, 0x79, 0xa7), (0xe1, 0x57, 0x59));
    let mix = |a: u8, b: u8| -> u8 {
        let mid = 0xf0 as f64;
        if t < 0.5 {
            (a as f64 + (mid - a as f64) * t * 2.0) as u8
        } else {
            (mid + (b as f64 - mid) * (t - 0.5) * 2.0) as u8
        }
    };
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(low.0, high.0),
        mix(low.1, high.1),
        mix(low.2, high.2)
    )
}

/// The space of `industries` with the proximities `ties` (indexes into
/// `industries`, proximity > 0) as SVG.
pub fn space_svg(industries: &[Industry], ties: &[(usize, usize, f64)], drawing: &SpaceDrawing) -> String {
    let n = industries.len();
    let tree: BTreeSet<usize> = spanning_tree(n, ties).into_iter().collect();
    let drawn: Vec<usize> = (0..ties.len())
        .filter(|i| tree.contains(i) || ties[*i].2 >= drawing.min_proximity)
        .collect();
    let edges: Vec<(usize, usize)> = drawn.iter().map(|&i| (ties[i].0, ties[i].1)).collect();
    let at = layout::force_directed(n, &edges, 300, 0);
    let largest = industries
        .iter()
        .map(|i| i.total)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let radius = |i: usize| 4.0 + 16.0 * (industries[i].total / largest).sqrt();
    let held = drawing.held.as_ref();
    let caption = format!(
        "{n} industries, {} ties (the spanning tree and every proximity ≥ {}); size: employees, colour: PCI{}",
        drawn.len(),
        drawing.min_proximity,
        held.map_or(String::new(), |(cluster, set)| format!(
            "; ringed: the {} industries {cluster} is specialised in",
            set.len()
        ))
    );
    let mut out = String::new();
    header(&mut out, &drawing.title, &caption);
    out.push_str("<g id=\"ties\" stroke=\"#8a8a8a\">\n");
    for &i in &drawn {
        let (a, b, phi) = ties[i];
        let (p, q) = (place(at[a]), place(at[b]));
        let _ = writeln!(
            out,
            r#"<line class="tie" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke-width="{:.1}" stroke-opacity="{:.2}"><title>{} – {}: {phi:.3}</title></line>"#,
            p.0,
            p.1,
            q.0,
            q.1,
            0.5 + 2.5 * phi,
            0.25 + 0.6 * phi,
            esc(&industries[a].code),
            esc(&industries[b].code)
        );
    }
    out.push_str("</g>\n<g id=\"industries\">\n");
    for (i, industry) in industries.iter().enumerate() {
        let (x, y) = place(at[i]);
        let ringed = held.is_some_and(|(_, set)| set.contains(&industry.code));
        let (class, stroke) = if ringed {
            ("industry held", r##" stroke="#111" stroke-width="3""##)
        } else {
            ("industry", r##" stroke="#ffffff" stroke-width="1.2""##)
        };
        let pci = industry.pci.map_or("undefined".to_string(), |p| format!("{p:.3}"));
        let _ = writeln!(
            out,
            r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="{:.1}" fill="{}"{stroke}><title>{}: {} employees, PCI {pci}</title></circle>"#,
            radius(i),
            pci_colour(industry.pci),
            esc(&industry.code),
            industry.total
        );
    }
    out.push_str("</g>\n");
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by(|&a, &b| industries[b].total.total_cmp(&industries[a].total).then(a.cmp(&b)));
    label(
        &mut out,
        by_size.iter().take(drawing.labels).map(|&i| {
            let (x, y) = place(at[i]);
            (x, y + radius(i) + 12.0, industries[i].code.as_str())
        }),
    );
    let (simple, middle, complex, undefined) = (
        pci_colour(Some(-2.0)),
        pci_colour(Some(0.0)),
        pci_colour(Some(2.0)),
        pci_colour(None),
    );
    let mut entries = vec![
        (Swatch::Dot(simple.as_str()), "PCI −2 (simple)".to_string()),
        (Swatch::Dot(middle.as_str()), "PCI 0".to_string()),
        (Swatch::Dot(complex.as_str()), "PCI +2 (complex)".to_string()),
        (Swatch::Dot(undefined.as_str()), "PCI undefined".to_string()),
        (
            Swatch::Line {
                dashed: false,
                colour: "#8a8a8a",
            },
            "proximity (wider: nearer)".to_string(),
        ),
    ];
    if let Some((cluster, _)) = held {
        entries.push((Swatch::Ring, format!("{cluster} is specialised in it")));
    }
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spanning_tree_keeps_the_strongest_tie_of_each_cycle() {
        let ties = [(0, 1, 0.9), (1, 2, 0.8), (0, 2, 0.1), (3, 4, 0.5)];
        let tree: BTreeSet<usize> = spanning_tree(5, &ties).into_iter().collect();
        assert_eq!(tree, BTreeSet::from([0, 1, 3]));
    }

    #[test]
    fn every_industry_is_drawn_and_the_held_ones_ringed() {
        let industries: Vec<Industry> = ["C1010", "C1020", "C1030"]
            .iter()
            .enumerate()
            .map(|(i, code)| Industry {
                code: code.to_string(),
                total: 100.0 * (i + 1) as f64,
                pci: (i < 2).then_some(i as f64 - 0.5),
            })
            .collect();
        let svg = space_svg(
            &industries,
            &[(0, 1, 0.7), (1, 2, 0.2)],
            &SpaceDrawing {
                title: "space".into(),
                min_proximity: 0.5,
                held: Some(("K".into(), BTreeSet::from(["C1020".to_string()]))),
                labels: 3,
            },
        );
        assert_eq!(svg.matches("<circle class=\"industry").count(), 3);
        assert_eq!(svg.matches("class=\"industry held\"").count(), 1);
        assert_eq!(svg.matches("class=\"tie\"").count(), 2, "the tree joins all three");
        assert!(svg.contains("PCI undefined"));
    }
}
