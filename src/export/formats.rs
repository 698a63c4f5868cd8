//! The formats an export is written in. Each writes a [`Table`]; the CSV
//! directory is `import::write_dir` on the selection's changes.

use std::io::{self, Write};

use super::table::{Item, Kind, Table, Value};

/// A file format of `clusternet export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// GraphML (NetworkX `read_graphml`, igraph `Read_GraphML`, Gephi, yEd).
    Graphml,
    /// GEXF 1.2 (Gephi; NetworkX `read_gexf`).
    Gexf,
    /// Graphviz DOT; virtual ties dashed.
    Dot,
    /// NetworkX's node-link JSON (`nx.node_link_graph(data, edges="edges")`).
    Json,
    /// The CSV directory `clusternet import` reads (FIRM layer only).
    Csv,
}

/// Writes `table` in `format` (any but CSV).
pub fn write(table: &Table, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Graphml => graphml(table, out),
        Format::Gexf => gexf(table, out),
        Format::Dot => dot(table, out),
        Format::Json => node_link(table, out),
        Format::Csv => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CSV is a directory of files, written from the selection",
        )),
    }
}

/// Text safe inside an XML attribute or element: escaped, and without the
/// control characters XML 1.0 forbids.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn plain(value: &Value) -> String {
    match value {
        Value::Text(s) => s.clone(),
        Value::Float(x) => x.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
    }
}

/// The attributes that have a value, with their declaration index.
fn present(item: &Item) -> impl Iterator<Item = (usize, &Value)> {
    item.values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
}

/// An attribute type as GraphML and GEXF both name it.
fn xml_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "string",
        Kind::Float => "double",
        Kind::Integer => "long",
        Kind::Boolean => "boolean",
    }
}

fn graphml(table: &Table, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">"#
    )?;
    for (i, (name, k)) in table.node_attributes.iter().enumerate() {
        writeln!(
            out,
            r#"  <key id="n{i}" for="node" attr.name="{name}" attr.type="{}"/>"#,
            xml_type(*k)
        )?;
    }
    for (i, (name, k)) in table.edge_attributes.iter().enumerate() {
        writeln!(
            out,
            r#"  <key id="e{i}" for="edge" attr.name="{name}" attr.type="{}"/>"#,
            xml_type(*k)
        )?;
    }
    let default = if table.directed { "directed" } else { "undirected" };
    writeln!(out, r#"  <graph id="{}" edgedefault="{default}">"#, layer_name(table))?;
    for node in &table.nodes {
        writeln!(out, r#"    <node id="{}">"#, xml(&node.id))?;
        for (i, value) in present(&node.attributes) {
            writeln!(out, r#"      <data key="n{i}">{}</data>"#, xml(&plain(value)))?;
        }
        writeln!(out, "    </node>")?;
    }
    for edge in &table.edges {
        writeln!(
            out,
            r#"    <edge source="{}" target="{}">"#,
            xml(&edge.source),
            xml(&edge.target)
        )?;
        for (i, value) in present(&edge.attributes) {
            writeln!(out, r#"      <data key="e{i}">{}</data>"#, xml(&plain(value)))?;
        }
        writeln!(out, "    </edge>")?;
    }
    writeln!(out, "  </graph>\n</graphml>")
}

fn layer_name(table: &Table) -> &'static str {
    match table.layer {
        crate::graph::Layer::Firm => "firm",
        crate::graph::Layer::Cluster => "cluster",
        crate::graph::Layer::Site => "site",
    }
}

fn gexf(table: &Table, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(out, r#"<gexf xmlns="http://www.gexf.net/1.2draft" version="1.2">"#)?;
    writeln!(out, r#"  <meta><creator>clusternet</creator></meta>"#)?;
    let default = if table.directed { "directed" } else { "undirected" };
    writeln!(out, r#"  <graph mode="static" defaultedgetype="{default}">"#)?;
    for (class, declared) in [("node", &table.node_attributes), ("edge", &table.edge_attributes)] {
        writeln!(out, r#"    <attributes class="{class}">"#)?;
        for (i, (name, k)) in declared.iter().enumerate() {
            writeln!(
                out,
                r#"      <attribute id="{i}" title="{name}" type="{}"/>"#,
                xml_type(*k)
            )?;
        }
        writeln!(out, "    </attributes>")?;
    }
    let values = |out: &mut dyn Write, item: &Item| -> io::Result<()> {
        writeln!(out, "<attvalues>")?;
        for (i, value) in present(item) {
            writeln!(out, r#"        <attvalue for="{i}" value="{}"/>"#, xml(&plain(value)))?;
        }
        writeln!(out, "      </attvalues>")
    };
    writeln!(out, "    <nodes>")?;
    for node in &table.nodes {
        write!(
            out,
            r#"      <node id="{}" label="{}">"#,
            xml(&node.id),
            xml(&node.label)
        )?;
        values(out, &node.attributes)?;
        writeln!(out, "      </node>")?;
    }
    writeln!(out, "    </nodes>\n    <edges>")?;
    for (i, edge) in table.edges.iter().enumerate() {
        write!(
            out,
            r#"      <edge id="{i}" source="{}" target="{}">"#,
            xml(&edge.source),
            xml(&edge.target)
        )?;
        values(out, &edge.attributes)?;
        writeln!(out, "      </edge>")?;
    }
    writeln!(out, "    </edges>\n  </graph>\n</gexf>")
}

/// A DOT identifier: always quoted, so any id is one.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn dot(table: &Table, out: &mut dyn Write) -> io::Result<()> {
    let (graph, arrow) = if table.directed {
        ("digraph", "->")
    } else {
        ("graph", "--")
    };
    writeln!(out, "{graph} {} {{", layer_name(table))?;
    let attributes = |declared: &[(&str, Kind)], item: &Item, extra: Option<&str>| -> String {
        let mut parts: Vec<String> = present(item)
            .map(|(i, v)| {
                let value = match v {
                    Value::Text(s) => quoted(s),
                    other => plain(other),
                };
                format!("{}={value}", quoted(declared[i].0))
            })
            .collect();
        parts.extend(extra.map(String::from));
        parts.join(", ")
    };
    for node in &table.nodes {
        let label = format!("label={}", quoted(&node.label));
        writeln!(
            out,
            "  {} [{}];",
            quoted(&node.id),
            attributes(&table.node_attributes, &node.attributes, Some(&label))
        )?;
    }
    for edge in &table.edges {
        let style = edge.virtual_tie.then_some("style=dashed");
        writeln!(
            out,
            "  {} {arrow} {} [{}];",
            quoted(&edge.source),
            quoted(&edge.target),
            attributes(&table.edge_attributes, &edge.attributes, style)
        )?;
    }
    writeln!(out, "}}")
}

fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::Text(s) => serde_json::Value::from(s.as_str()),
        Value::Float(x) => serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Boolean(b) => serde_json::Value::from(*b),
    }
}

/// NetworkX's node-link form: `directed`, `multigraph`, `graph`, `nodes`
/// (each with `id`) and `edges` (each with `source` and `target`, and `key`
/// on a multigraph). Written an item at a time: a document tree of a
/// million links would take gigabytes.
fn node_link(table: &Table, out: &mut dyn Write) -> io::Result<()> {
    use serde_json::{Map, Value as J};
    let object = |declared: &[(&str, Kind)], item: &Item, mut map: Map<String, J>| -> J {
        for (i, value) in present(item) {
            map.insert(declared[i].0.to_string(), json(value));
        }
        J::Object(map)
    };
    write!(
        out,
        r#"{{"directed":{},"multigraph":{},"graph":{{"layer":"{}"}},"nodes":["#,
        table.directed,
        table.multigraph,
        layer_name(table)
    )?;
    for (i, n) in table.nodes.iter().enumerate() {
        let mut map = Map::new();
        map.insert("id".into(), J::from(&*n.id));
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &object(&table.node_attributes, &n.attributes, map))?;
    }
    out.write_all(br#"],"edges":["#)?;
    // Keys number the edges between one ordered pair, as NetworkX does.
    let mut seen: std::collections::HashMap<(&str, &str), u64> = std::collections::HashMap::new();
    for (i, e) in table.edges.iter().enumerate() {
        let mut map = Map::new();
        map.insert("source".into(), J::from(&*e.source));
        map.insert("target".into(), J::from(&*e.target));
        if table.multigraph {
            let key = seen.entry((&e.source, &e.target)).or_insert(0);
            map.insert("key".into(), J::from(*key));
            *key += 1;
        }
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &object(&table.edge_attributes, &e.attributes, map))?;
    }
    writeln!(out, "]}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_markup_quotes_and_control_characters_stay_inside_their_fields() {
        assert_eq!(
            xml("R&D <\"Park\"> 'B'\u{1}\t"),
            "R&amp;D &lt;&quot;Park&quot;&gt; &apos;B&apos;\t"
        );
        assert_eq!(quoted("say \"hi\"\\\nbye"), r#""say \"hi\"\\\nbye""#);
    }
}
