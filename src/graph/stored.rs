//! An analysis graph kept in a file across a restart, so the first analysis
//! after it need not project the network (on 10M links the projection takes
//! as long as the PageRank).
//!
//! Only FIRM-layer graphs (the large ones) are stored, with the revision
//! they were made of. A stored graph is used only when the network is at
//! that same revision and the filter keeps the same actors in the same
//! order; ids and names come from the network. Anything else (another
//! revision, a damaged or foreign file) is refused and the graph is made
//! again, so the file is a cache and never a source of truth.

use std::{
    fs::File,
    io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    path::Path,
    sync::Arc,
};

use super::{AnalysisGraph, FirmNodes, GraphSpec, Layer, Rows};
use crate::network::{Ix, Network};

/// The layout follows the rows' chunks: 3 since chunks hold 1,024 nodes.
const MAGIC: &[u8; 8] = b"CNGRAPH3";

/// Writes `graph`, made of `spec` at `revision`, to `path` (through a
/// temporary file and a rename, so a crash leaves the old file or the new
/// one). Graphs of other layers are not stored: false.
pub fn write(path: &Path, revision: u64, spec: &GraphSpec, graph: &AnalysisGraph) -> io::Result<bool> {
    if spec.layer != Layer::Firm || graph.actors.len() != graph.node_count() {
        return Ok(false);
    }
    let temporary = path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
    out.write_all(MAGIC)?;
    out.write_all(&revision.to_le_bytes())?;
    let weighted = spec.weighted;
    let spec = serde_json::to_vec(spec).map_err(io::Error::other)?;
    out.write_all(&(spec.len() as u64).to_le_bytes())?;
    out.write_all(&spec)?;
    out.write_all(&[u8::from(graph.directed)])?;
    out.write_all(&(graph.actors.len() as u64).to_le_bytes())?;
    for ix in graph.actors.iter() {
        out.write_all(&ix.to_le_bytes())?;
    }
    // The out-rows' length, so the in-rows can be read beside them.
    out.write_all(&graph.outgoing.stored_len(weighted).to_le_bytes())?;
    graph.outgoing.write_to(&mut out, weighted)?;
    if graph.directed {
        graph.incoming.write_to(&mut out, weighted)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(true)
}

/// What the file at `path` holds a graph of: (its revision, its spec).
pub fn header(path: &Path) -> io::Result<(u64, GraphSpec)> {
    read_header(&mut BufReader::new(File::open(path)?))
}

fn read_header(input: &mut impl Read) -> io::Result<(u64, GraphSpec)> {
    let mut magic = [0; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a graph file of this version"));
    }
    let revision = read_u64(input)?;
    let spec_len = read_u64(input)?;
    if spec_len > 1 << 20 {
        return Err(invalid("spec length"));
    }
    let mut spec = vec![0; spec_len as usize];
    input.read_exact(&mut spec)?;
    let spec: GraphSpec = serde_json::from_slice(&spec).map_err(|e| invalid(&e.to_string()))?;
    if spec.layer != Layer::Firm {
        return Err(invalid("not a FIRM graph"));
    }
    Ok((revision, spec))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("stored graph: {what}"))
}

/// The graph stored in `path` if it was made of `network` at `revision`:
/// (its spec, it). `Ok(None)` when it was made of another revision.
pub fn read(path: &Path, network: &Network, revision: u64) -> io::Result<Option<(GraphSpec, AnalysisGraph)>> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(path)?);
    let (made_of, spec) = read_header(&mut input)?;
    if made_of != revision {
        return Ok(None);
    }
    let mut directed = [0];
    input.read_exact(&mut directed)?;
    let directed = directed[0] == 1;
    if directed == spec.undirected {
        return Err(invalid("edge mode"));
    }
    let nodes = FirmNodes::of(network, &spec.filter);
    let count = read_u64(&mut input)?;
    if count != nodes.actors.len() as u64 {
        return Err(invalid("node count"));
    }
    for expected in &nodes.actors {
        let mut ix = [0; 4];
        input.read_exact(&mut ix)?;
        if Ix::from_le_bytes(ix) != *expected {
            return Err(invalid("nodes"));
        }
    }
    let n = nodes.actors.len();
    let weighted = spec.weighted;
    let out_len = read_u64(&mut input)?;
    let in_at = input
        .stream_position()?
        .checked_add(out_len)
        .ok_or_else(|| invalid("out-rows length"))?;
    let mut read_out = move || -> io::Result<Rows> {
        let rows = Rows::read_from(&mut input, n, n, weighted)?;
        if input.stream_position()? != in_at {
            return Err(invalid("out-rows length"));
        }
        if !directed {
            ends(&mut input)?;
        }
        Ok(rows)
    };
    // The two directions are read side by side.
    let (outgoing, incoming) = if directed {
        let read_in = || -> io::Result<Rows> {
            let mut input = BufReader::with_capacity(1 << 20, File::open(path)?);
            input.seek(SeekFrom::Start(in_at))?;
            let rows = Rows::read_from(&mut input, n, n, weighted)?;
            ends(&mut input)?;
            Ok(rows)
        };
        let (outgoing, incoming) = rayon::join(read_out, read_in);
        (Arc::new(outgoing?), Arc::new(incoming?))
    } else {
        let rows = Arc::new(read_out()?);
        (rows.clone(), rows)
    };
    if outgoing.arc_count() != incoming.arc_count() {
        return Err(invalid("arc counts"));
    }
    let graph = AnalysisGraph {
        ids: Arc::new(nodes.ids),
        names: Arc::new(nodes.names),
        directed,
        outgoing,
        incoming,
        actors: Arc::new(nodes.actors),
    };
    Ok(Some((spec, graph)))
}

/// Nothing after what was read.
fn ends(input: &mut impl Read) -> io::Result<()> {
    if input.read(&mut [0])? != 0 {
        return Err(invalid("trailing bytes"));
    }
    Ok(())
}

fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        graph::GraphFilter,
        synthetic::{generate, SyntheticConfig},
    };

    fn network(actors: usize) -> Network {
        let mut network = Network::default();
        network
            .apply(&generate(&SyntheticConfig {
                clusters: 3,
                actors,
                links: actors * 5,
                ..SyntheticConfig::default()
            }))
            .unwrap();
        network
    }

    fn spec(undirected: bool, weighted: bool) -> GraphSpec {
        GraphSpec {
            layer: Layer::Firm,
            filter: GraphFilter::default(),
            undirected,
            weighted,
        }
    }

    fn same(a: &AnalysisGraph, b: &AnalysisGraph) {
        assert_eq!(a.ids, b.ids);
        assert_eq!(a.names, b.names);
        assert_eq!(a.actors, b.actors);
        assert_eq!(a.directed, b.directed);
        assert_eq!(*a.outgoing, *b.outgoing);
        assert_eq!(*a.incoming, *b.incoming);
    }

    #[test]
    fn a_graph_reads_back_as_it_was_written_for_its_revision_only() {
        let network = network(40_000);
        let dir = tempfile::tempdir().unwrap();
        for (undirected, weighted) in [(false, false), (false, true), (true, true)] {
            let spec = spec(undirected, weighted);
            let graph = spec.build(&network);
            let path = dir.path().join("g.graph");
            assert!(write(&path, 9, &spec, &graph).unwrap());
            let (read_spec, back) = read(&path, &network, 9).unwrap().expect("the same revision");
            assert_eq!(read_spec, spec);
            same(&back, &graph);
            assert!(read(&path, &network, 10).unwrap().is_none(), "another revision");
            assert_eq!(header(&path).unwrap(), (9, spec));
        }
    }

    #[test]
    fn a_damaged_or_foreign_file_is_an_error_never_a_graph() {
        let network = network(2_000);
        let spec = spec(false, false);
        let graph = spec.build(&network);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.graph");
        write(&path, 3, &spec, &graph).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The file ends with the in-rows' targets (an unweighted graph's
        // weights are all 1, not stored).
        let last_target = bytes.len() - 4;
        let damaged = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            read(&path, &network, 3).map(|g| g.is_some())
        };
        let mut out_of_range = bytes.clone();
        out_of_range[last_target..last_target + 4].copy_from_slice(&(graph.node_count() as u32).to_le_bytes());
        assert!(damaged(&out_of_range).is_err(), "a target past the nodes");
        assert!(damaged(&bytes[..bytes.len() - 1]).is_err(), "cut short");
        assert!(damaged(&[&bytes[..], &[0]].concat()).is_err(), "trailing bytes");
        assert!(damaged(&bytes[..5]).is_err(), "no header");
        let mut foreign = bytes.clone();
        foreign[..8].copy_from_slice(b"NOTGRAPH");
        assert!(damaged(&foreign).is_err(), "not a graph file");
        // A network whose filter keeps other actors: refused.
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path, &self::network(2_001), 3).is_err());
        assert!(damaged(&bytes).unwrap(), "the file as written is read");
    }
}
