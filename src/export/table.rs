//! A selection flattened into nodes and edges with typed attributes: the one
//! place that decides which attributes an exported node or edge carries, so
//! every format carries the same.

use std::collections::BTreeMap;

use super::{NodeResults, Selection};
use crate::{
    graph::Layer,
    model::{Channel, Date, Id, Segment, Site},
};

/// An attribute's type, as GraphML and GEXF declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Float,
    Integer,
    Boolean,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Float(f64),
    Integer(i64),
    Boolean(bool),
}

/// A node or an edge: its attribute values in the order of the table's
/// declarations, `None` where the value is unknown.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub values: Vec<Option<Value>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: Id,
    pub label: String,
    pub attributes: Item,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub source: Id,
    pub target: Id,
    /// Drawn dashed: a virtual tie.
    pub virtual_tie: bool,
    pub attributes: Item,
}

/// The graph every format writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub layer: Layer,
    pub directed: bool,
    /// Whether two edges may join the same pair (links of different kinds).
    pub multigraph: bool,
    pub node_attributes: Vec<(&'static str, Kind)>,
    pub edge_attributes: Vec<(&'static str, Kind)>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

fn text(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| Value::Text(s.to_string()))
}

fn date(d: Option<Date>) -> Option<Value> {
    d.map(|d| Value::Text(d.to_string()))
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> Option<Value> {
    text(&items.collect::<Vec<_>>().join(";"))
}

const RESULT_ATTRIBUTES: [(&str, Kind); 5] = [
    ("pagerank", Kind::Float),
    ("community", Kind::Integer),
    ("stage", Kind::Text),
    ("eci", Kind::Float),
    ("coi", Kind::Float),
];

fn results(r: Option<&NodeResults>) -> [Option<Value>; 5] {
    let r = r.copied().unwrap_or_default();
    [
        r.pagerank.map(Value::Float),
        r.community.map(|c| Value::Integer(c as i64)),
        r.stage.map(|s| Value::Text(s.as_str().to_string())),
        r.eci.map(Value::Float),
        r.coi.map(Value::Float),
    ]
}

impl Table {
    pub fn of(selection: &Selection, layer: Layer) -> Table {
        match layer {
            Layer::Firm => firm(selection),
            layer => places(selection, layer),
        }
    }
}

fn firm(selection: &Selection) -> Table {
    let sites: BTreeMap<&Id, &Site> = selection
        .clusters
        .iter()
        .flat_map(|c| c.sites.iter().map(|s| (&s.id, s)))
        .collect();
    let mut node_attributes = vec![
        ("name", Kind::Text),
        ("kind", Kind::Text),
        ("industry", Kind::Text),
        ("segments", Kind::Text),
        ("clusters", Kind::Text),
        ("site_id", Kind::Text),
        ("lat", Kind::Float),
        ("lon", Kind::Float),
        ("country", Kind::Text),
        ("employees", Kind::Integer),
        ("revenue", Kind::Float),
        ("valid_from", Kind::Text),
        ("valid_to", Kind::Text),
    ];
    node_attributes.extend(RESULT_ATTRIBUTES);
    let nodes = selection
        .actors
        .iter()
        .map(|a| {
            let site = a.site_id.as_ref().and_then(|s| sites.get(s));
            let mut values = vec![
                text(&a.name),
                Some(Value::Text(a.kind.to_string())),
                text(&a.industry),
                list(a.segments.iter().map(Segment::as_str)),
                list(a.cluster_ids.iter().map(|c| &**c)),
                a.site_id.as_deref().and_then(text),
                site.map(|s| Value::Float(s.lat)),
                site.map(|s| Value::Float(s.lon)),
                a.country.and_then(|c| text(c.as_str())),
                a.employees.map(|e| Value::Integer(e as i64)),
                a.revenue.map(Value::Float),
                date(a.validity.from),
                date(a.validity.to),
            ];
            values.extend(results(selection.results.get(&a.id)));
            Node {
                id: a.id.clone(),
                label: a.name.clone(),
                attributes: Item { values },
            }
        })
        .collect();
    let edges = selection
        .links
        .iter()
        .map(|l| Edge {
            source: l.source.clone(),
            target: l.target.clone(),
            virtual_tie: l.channel == Channel::Virtual,
            attributes: Item {
                values: vec![
                    Some(Value::Text(l.kind.to_string())),
                    Some(Value::Text(l.channel.to_string())),
                    Some(Value::Float(l.weight)),
                    date(l.validity.from),
                    date(l.validity.to),
                ],
            },
        })
        .collect();
    Table {
        layer: Layer::Firm,
        directed: true,
        multigraph: true,
        node_attributes,
        edge_attributes: vec![
            ("kind", Kind::Text),
            ("channel", Kind::Text),
            ("weight", Kind::Float),
            ("valid_from", Kind::Text),
            ("valid_to", Kind::Text),
        ],
        nodes,
        edges,
    }
}

/// The CLUSTER or SITE layer: a node per cluster (at the centre of its
/// sites) or per site, and the aggregated undirected edges.
fn places(selection: &Selection, layer: Layer) -> Table {
    let mut node_attributes = vec![
        ("name", Kind::Text),
        ("cluster_id", Kind::Text),
        ("region", Kind::Text),
        ("industry", Kind::Text),
        ("country", Kind::Text),
        ("lat", Kind::Float),
        ("lon", Kind::Float),
    ];
    node_attributes.extend(RESULT_ATTRIBUTES);
    let mut nodes = Vec::new();
    for c in &selection.clusters {
        let mut node = |id: &Id, name: &str, at: Option<(f64, f64)>| {
            let mut values = vec![
                text(name),
                Some(Value::Text(c.id.to_string())),
                text(&c.region),
                text(&c.industry),
                c.country.and_then(|c| text(c.as_str())),
                at.map(|(lat, _)| Value::Float(lat)),
                at.map(|(_, lon)| Value::Float(lon)),
            ];
            values.extend(results(selection.results.get(id)));
            nodes.push(Node {
                id: id.clone(),
                label: name.to_string(),
                attributes: Item { values },
            });
        };
        if layer == Layer::Site {
            for s in &c.sites {
                node(&s.id, &s.name, Some((s.lat, s.lon)));
            }
        } else {
            node(&c.id, &c.name, c.centre());
        }
    }
    let edges = selection
        .edges
        .iter()
        .map(|e| {
            let firm_links: Vec<String> = e
                .firm_links
                .iter()
                .map(|((kind, channel), (count, _))| format!("{kind}/{channel}:{count}"))
                .collect();
            let cluster_links: Vec<String> = e
                .cluster_links
                .iter()
                .map(|(kind, channel, _)| format!("{kind}/{channel}"))
                .collect();
            let firm_link_count: u64 = e.firm_links.values().map(|(count, _)| count).sum();
            // Dashed when every tie is virtual (a platform, say).
            let channels = e
                .firm_links
                .keys()
                .map(|(_, c)| *c)
                .chain(e.cluster_links.iter().map(|(_, c, _)| *c));
            let mut any = false;
            let virtual_tie = channels.inspect(|_| any = true).all(|c| c == Channel::Virtual) && any;
            Edge {
                source: e.source.clone(),
                target: e.target.clone(),
                virtual_tie,
                attributes: Item {
                    values: vec![
                        Some(Value::Float(e.total_weight())),
                        Some(Value::Integer(firm_link_count as i64)),
                        text(&firm_links.join(";")),
                        text(&cluster_links.join(";")),
                    ],
                },
            }
        })
        .collect();
    Table {
        layer,
        directed: false,
        multigraph: false,
        node_attributes,
        edge_attributes: vec![
            ("weight", Kind::Float),
            ("firm_link_count", Kind::Integer),
            ("firm_links", Kind::Text),
            ("cluster_links", Kind::Text),
        ],
        nodes,
        edges,
    }
}
