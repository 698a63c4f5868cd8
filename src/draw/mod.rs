//! Pictures of the networks as SVG: a cluster's firm network (force-directed,
//! nodes sized by degree or PageRank and coloured by segment, community or
//! place, virtual ties dashed, platforms drawn as squares) and the
//! inter-cluster map (sites at their latitude and longitude, transport links
//! solid, platform links dashed, each site coloured by its cluster's stage).
//! Both draw from an export [`Selection`], so what is drawn is what
//! `clusternet export` would write. [`space`] draws the industry space.

pub mod layout;
pub mod space;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
};

use crate::{
    analysis::stages::stage::Stage,
    export::Selection,
    model::{ActorKind, Channel, ClusterLinkKind, Id},
};

/// Categorical colours (Tableau 10), the last for "other".
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
];

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 900.0;
/// The drawing area: left of the legend, below the title.
const AREA: (f64, f64, f64, f64) = (40.0, 70.0, 900.0, 860.0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SizeBy {
    Degree,
    Pagerank,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColourBy {
    Segment,
    Community,
    Place,
}

/// How to draw a firm network.
#[derive(Clone, Debug)]
pub struct FirmDrawing {
    pub title: String,
    pub size_by: SizeBy,
    pub colour_by: ColourBy,
    /// Nodes drawn at most: the largest by `size_by`; the rest are left out
    /// and the caption says how many.
    pub max_nodes: usize,
    /// Nodes labelled: the largest ones.
    pub labels: usize,
}

/// Text safe in SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn header(out: &mut String, title: &str, caption: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif">
<title>{t}</title>
<rect width="100%" height="100%" fill="#ffffff"/>
<text id="title" x="40" y="36" font-size="22" fill="#222">{t}</text>
<text id="caption" x="40" y="58" font-size="13" fill="#555">{c}</text>
"##,
        t = esc(title),
        c = esc(caption)
    );
}

/// A legend entry: a swatch (circle, square, or line: solid or dashed) and
/// its text.
enum Swatch<'a> {
    Dot(&'a str),
    Square,
    /// A white dot with a dark ring.
    Ring,
    Line {
        dashed: bool,
        colour: &'a str,
    },
}

fn legend(out: &mut String, entries: &[(Swatch, String)]) {
    let (x, mut y) = (AREA.2 + 40.0, AREA.1 + 10.0);
    out.push_str("<g id=\"legend\" font-size=\"13\" fill=\"#222\">\n");
    for (swatch, text) in entries {
        match swatch {
            Swatch::Dot(colour) => {
                let _ = writeln!(out, r#"<circle cx="{}" cy="{}" r="7" fill="{colour}"/>"#, x + 8.0, y);
            }
            Swatch::Square => {
                let _ = writeln!(
                    out,
                    r##"<rect x="{}" y="{}" width="14" height="14" fill="#ffffff" stroke="#222" stroke-width="2"/>"##,
                    x + 1.0,
                    y - 7.0
                );
            }
            Swatch::Ring => {
                let _ = writeln!(
                    out,
                    r##"<circle cx="{}" cy="{}" r="6" fill="#ffffff" stroke="#111" stroke-width="3"/>"##,
                    x + 8.0,
                    y
                );
            }
            Swatch::Line { dashed, colour } => {
                let dash = if *dashed { r#" stroke-dasharray="6 4""# } else { "" };
                let _ = writeln!(
                    out,
                    r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2.5"{dash}/>"#,
                    x + 18.0
                );
            }
        }
        let _ = writeln!(out, r#"<text x="{}" y="{}">{}</text>"#, x + 26.0, y + 4.5, esc(text));
        y += 22.0;
    }
    out.push_str("</g>\n");
}

/// Positions in [0, 1]² onto the drawing area.
fn place(p: (f64, f64)) -> (f64, f64) {
    let (x0, y0, x1, y1) = AREA;
    let margin = 30.0;
    (
        x0 + margin + p.0 * (x1 - x0 - 2.0 * margin),
        y0 + margin + p.1 * (y1 - y0 - 2.0 * margin),
    )
}

/// Colours for categories, the most common first; past the palette, "other".
fn categories(values: &[String]) -> (HashMap<String, &'static str>, Vec<(String, &'static str)>) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut order: Vec<(&str, usize)> = counts.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut colours = HashMap::new();
    let mut legend = Vec::new();
    for (i, (value, _)) in order.iter().enumerate() {
        let colour = PALETTE[i.min(PALETTE.len() - 1)];
        colours.insert(value.to_string(), colour);
        if i < PALETTE.len() - 1 {
            legend.push((value.to_string(), colour));
        } else if i == PALETTE.len() - 1 {
            legend.push(("other".to_string(), colour));
        }
    }
    (colours, legend)
}

/// A cluster's firm network (the selection's actors and links) as SVG.
pub fn firm_svg(selection: &Selection, drawing: &FirmDrawing) -> String {
    let actors = &selection.actors;
    let index: HashMap<&Id, usize> = actors.iter().enumerate().map(|(i, a)| (&a.id, i)).collect();
    let mut degree = vec![0usize; actors.len()];
    for l in &selection.links {
        if let (Some(&u), Some(&v)) = (index.get(&l.source), index.get(&l.target)) {
            degree[u] += 1;
            degree[v] += 1;
        }
    }
    let size = |i: usize| -> f64 {
        match drawing.size_by {
            SizeBy::Degree => degree[i] as f64,
            SizeBy::Pagerank => selection
                .results
                .get(&actors[i].id)
                .and_then(|r| r.pagerank)
                .unwrap_or(0.0),
        }
    };
    // The largest nodes, ties by id.
    let mut ranked: Vec<usize> = (0..actors.len()).collect();
    ranked.sort_by(|&a, &b| size(b).total_cmp(&size(a)).then(actors[a].id.cmp(&actors[b].id)));
    ranked.truncate(drawing.max_nodes);
    let left_out = actors.len() - ranked.len();
    let slot: HashMap<usize, usize> = ranked.iter().enumerate().map(|(s, &i)| (i, s)).collect();
    let mut edges = Vec::new();
    let mut ties = Vec::new();
    for l in &selection.links {
        let (Some(&u), Some(&v)) = (index.get(&l.source), index.get(&l.target)) else {
            continue;
        };
        if let (Some(&a), Some(&b)) = (slot.get(&u), slot.get(&v)) {
            edges.push((a, b));
            ties.push((a, b, l.channel == Channel::Virtual));
        }
    }
    let at = layout::force_directed(ranked.len(), &edges, 250, 0);
    let category = |i: usize| -> String {
        let a = &actors[i];
        match drawing.colour_by {
            ColourBy::Segment => a
                .segments
                .iter()
                .next()
                .map_or("no segment".into(), |s| s.as_str().to_lowercase()),
            ColourBy::Community => selection
                .results
                .get(&a.id)
                .and_then(|r| r.community)
                .map_or("no community".into(), |c| format!("community {c}")),
            ColourBy::Place => a.site_id.as_ref().map_or("no site".into(), |s| s.to_string()),
        }
    };
    let labels: Vec<String> = ranked.iter().map(|&i| category(i)).collect();
    let (colours, key) = categories(&labels);
    let largest = ranked.first().map_or(1.0, |&i| size(i)).max(f64::MIN_POSITIVE);
    let radius = |i: usize| 4.0 + 14.0 * (size(i) / largest).sqrt();
    let caption = if left_out > 0 {
        format!(
            "{} of {} actors drawn (the largest by {}); {} left out; {} ties",
            ranked.len(),
            actors.len(),
            size_name(drawing.size_by),
            left_out,
            ties.len()
        )
    } else {
        format!(
            "{} actors, {} ties; size by {}",
            actors.len(),
            ties.len(),
            size_name(drawing.size_by)
        )
    };
    let mut out = String::new();
    header(&mut out, &drawing.title, &caption);
    out.push_str("<g id=\"edges\" stroke=\"#8a8a8a\" stroke-opacity=\"0.55\">\n");
    for (a, b, dashed) in &ties {
        let (p, q) = (place(at[*a]), place(at[*b]));
        let dash = if *dashed { r#" stroke-dasharray="5 4""# } else { "" };
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke-width="1"{dash}/>"#,
            p.0, p.1, q.0, q.1
        );
    }
    out.push_str("</g>\n<g id=\"nodes\" stroke=\"#ffffff\" stroke-width=\"1.2\">\n");
    for (s, &i) in ranked.iter().enumerate() {
        let (x, y) = place(at[s]);
        let a = &actors[i];
        let colour = colours[&labels[s]];
        let r = radius(i);
        let tip = format!("<title>{} ({}): {}</title>", esc(&a.id), a.kind, esc(&a.name));
        if a.kind == ActorKind::Platform {
            let _ = writeln!(
                out,
                r##"<rect class="platform" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}" stroke="#222" stroke-width="2.5">{tip}</rect>"##,
                x - r,
                y - r,
                2.0 * r,
                2.0 * r
            );
        } else {
            let _ = writeln!(
                out,
                r#"<circle class="actor" cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{colour}">{tip}</circle>"#
            );
        }
    }
    out.push_str("</g>\n");
    label(
        &mut out,
        ranked.iter().take(drawing.labels).enumerate().map(|(s, &i)| {
            let (x, y) = place(at[s]);
            (x, y + radius(i) + 12.0, actors[i].name.as_str())
        }),
    );
    let mut entries: Vec<(Swatch, String)> = key.iter().map(|(text, c)| (Swatch::Dot(c), text.clone())).collect();
    entries.push((Swatch::Square, "platform actor".into()));
    entries.push((
        Swatch::Line {
            dashed: false,
            colour: "#8a8a8a",
        },
        "physical tie".into(),
    ));
    entries.push((
        Swatch::Line {
            dashed: true,
            colour: "#8a8a8a",
        },
        "virtual tie".into(),
    ));
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    out
}

fn size_name(size: SizeBy) -> &'static str {
    match size {
        SizeBy::Degree => "degree",
        SizeBy::Pagerank => "PageRank",
    }
}

/// Labels with a white halo, so they read over lines.
fn label<'a>(out: &mut String, items: impl Iterator<Item = (f64, f64, &'a str)>) {
    out.push_str(
        "<g id=\"labels\" font-size=\"12\" fill=\"#111\" text-anchor=\"middle\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\">\n",
    );
    for (x, y, text) in items {
        let _ = writeln!(out, r#"<text x="{x:.1}" y="{y:.1}">{}</text>"#, esc(text));
    }
    out.push_str("</g>\n");
}

fn stage_colour(stage: Option<Stage>) -> &'static str {
    match stage {
        Some(Stage::RegionalIntegration) => "#4e79a7",
        Some(Stage::GlobalValueChain) => "#f28e2b",
        Some(Stage::VirtualIntegration) => "#59a14f",
        Some(Stage::Unclassified) | None => "#bab0ac",
    }
}

/// The inter-cluster map (a SITE-layer selection with stages) as SVG.
pub fn map_svg(selection: &Selection, title: &str) -> String {
    struct Spot<'a> {
        id: &'a Id,
        name: &'a str,
        lat: f64,
        lon: f64,
        stage: Option<Stage>,
    }
    let spots: Vec<Spot> = selection
        .clusters
        .iter()
        .flat_map(|c| {
            c.sites.iter().map(move |s| Spot {
                id: &s.id,
                name: &s.name,
                lat: s.lat,
                lon: s.lon,
                stage: selection.results.get(&s.id).and_then(|r| r.stage),
            })
        })
        .collect();
    // Equirectangular (longitude shrunk by the cosine of the mean latitude),
    // blended half and half with each site's rank on both axes: a country
    // holds clusters a thousand kilometres apart and parks a few hundred
    // metres apart (the Changning parks), and plain coordinates would draw
    // the parks on top of one another. Order east to west and north to south
    // is kept.
    let mean_lat = spots.iter().map(|s| s.lat).sum::<f64>() / spots.len().max(1) as f64;
    let shrink = mean_lat.to_radians().cos().max(0.1);
    let xs = spread(&spots.iter().map(|s| s.lon * shrink).collect::<Vec<_>>());
    let ys = spread(&spots.iter().map(|s| -s.lat).collect::<Vec<_>>());
    let at: HashMap<&Id, (f64, f64)> = spots
        .iter()
        .zip(xs.into_iter().zip(ys))
        .map(|(s, p)| (s.id, place(p)))
        .collect();
    let caption = format!(
        "{} sites of {} clusters, placed by latitude and longitude (crowded sites spread apart, their order kept); {} ties between them",
        spots.len(),
        selection.clusters.len(),
        selection.edges.len()
    );
    let mut out = String::new();
    header(&mut out, title, &caption);
    out.push_str("<g id=\"edges\" fill=\"none\">\n");
    for e in &selection.edges {
        let (Some(p), Some(q)) = (at.get(&e.source), at.get(&e.target)) else {
            continue;
        };
        let firm: u64 = e.firm_links.values().map(|(count, _)| count).sum();
        if firm > 0 {
            let width = 1.0 + (firm as f64).ln_1p();
            let _ = writeln!(
                out,
                r##"<line class="firm-ties" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbbbbb" stroke-width="{width:.1}"><title>{firm} firm ties</title></line>"##,
                p.0, p.1, q.0, q.1
            );
        }
        for (kind, channel, _) in &e.cluster_links {
            let (class, colour, dash, offset) = match (kind, channel) {
                (ClusterLinkKind::Transport, _) => ("transport", "#222222", "", 0.0),
                (ClusterLinkKind::Platform, _) | (_, Channel::Virtual) => {
                    ("platform", "#2b6cb0", r#" stroke-dasharray="7 5""#, 4.0)
                }
                _ => ("cluster-link", "#666666", "", -4.0),
            };
            let _ = writeln!(
                out,
                r#"<line class="{class}" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2.5"{dash}/>"#,
                p.0,
                p.1 + offset,
                q.0,
                q.1 + offset
            );
        }
    }
    out.push_str("</g>\n<g id=\"nodes\" stroke=\"#ffffff\" stroke-width=\"1.5\">\n");
    for s in &spots {
        let (x, y) = at[s.id];
        let stage = s.stage.map_or("no stage", |s| s.as_str());
        let _ = writeln!(
            out,
            r#"<circle class="site" cx="{x:.1}" cy="{y:.1}" r="10" fill="{}"><title>{}: {}</title></circle>"#,
            stage_colour(s.stage),
            esc(s.name),
            stage
        );
    }
    out.push_str("</g>\n");
    // Labels beside their site, towards the middle, so none runs off the map.
    out.push_str(
        "<g id=\"labels\" font-size=\"13\" fill=\"#111\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\">\n",
    );
    let middle = (AREA.0 + AREA.2) / 2.0;
    for s in &spots {
        let (x, y) = at[s.id];
        let (anchor, dx) = if x < middle { ("start", 15.0) } else { ("end", -15.0) };
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x + dx,
            y + 4.5,
            esc(s.name)
        );
    }
    out.push_str("</g>\n");
    let entries = vec![
        (
            Swatch::Dot(stage_colour(Some(Stage::RegionalIntegration))),
            "regional integration".to_string(),
        ),
        (
            Swatch::Dot(stage_colour(Some(Stage::GlobalValueChain))),
            "global value chain".into(),
        ),
        (
            Swatch::Dot(stage_colour(Some(Stage::VirtualIntegration))),
            "virtual integration".into(),
        ),
        (Swatch::Dot(stage_colour(None)), "unclassified".into()),
        (
            Swatch::Line {
                dashed: false,
                colour: "#222222",
            },
            "transport link".into(),
        ),
        (
            Swatch::Line {
                dashed: true,
                colour: "#2b6cb0",
            },
            "platform link".into(),
        ),
        (
            Swatch::Line {
                dashed: false,
                colour: "#bbbbbb",
            },
            "firm ties (width: count)".into(),
        ),
    ];
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    out
}

/// Values to [0, 1]: half their linear position in their range, half their
/// rank, so that the order is kept and crowded values are pulled apart.
fn spread(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    if n < 2 {
        return vec![0.5; n];
    }
    let (min, max) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let range = (max - min).max(1e-9);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    let mut rank = vec![0.0; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r as f64 / (n - 1) as f64;
    }
    (0..n)
        .map(|i| 0.5 * (values[i] - min) / range + 0.5 * rank[i])
        .collect()
}
