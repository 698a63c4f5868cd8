"""Loads clusternet's exports with the libraries analysts use and compares
them with the server's own answers.

    python check_export.py EXPECTED_JSON EXPORT_DIR

EXPECTED_JSON comes from the Rust test (tests/it/export.rs), which asks the
server over gRPC: the firm network's size, every actor's kind, site
coordinates and PageRank (Centrality), each cluster's stage (AssessStage),
and the inter-cluster network's size (InterClusterNetwork). EXPORT_DIR holds
firm.graphml, firm.gexf, firm.json and cluster.graphml, written by
`clusternet export`. Exits non-zero with a message on the first mismatch.
"""

import json
import math
import sys

import igraph
import networkx as nx


def fail(message):
    print(f"check_export: {message}", file=sys.stderr)
    sys.exit(1)


def close(a, b):
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)


def check_firm(name, nodes, edge_count, expected):
    """nodes: id -> attribute dict, as the library read them."""
    firm = expected["firm"]
    if len(nodes) != firm["nodes"]:
        fail(f"{name}: {len(nodes)} nodes, the server has {firm['nodes']}")
    if edge_count != firm["edges"]:
        fail(f"{name}: {edge_count} edges, the server has {firm['edges']}")
    for actor, want in firm["actors"].items():
        got = nodes.get(actor)
        if got is None:
            fail(f"{name}: actor {actor} is missing")
        if got.get("kind") != want["kind"]:
            fail(f"{name}: {actor} kind {got.get('kind')!r}, the server says {want['kind']!r}")
        if "lat" in want and not close(got.get("lat"), want["lat"]):
            fail(f"{name}: {actor} lat {got.get('lat')!r}, the server says {want['lat']}")
        if not close(got.get("pagerank"), want["pagerank"]):
            fail(f"{name}: {actor} pagerank {got.get('pagerank')!r}, the server says {want['pagerank']}")
        if got.get("stage") != want["stage"]:
            fail(f"{name}: {actor} stage {got.get('stage')!r}, the server says {want['stage']!r}")
        community = got.get("community")
        if community is None or int(community) != community:
            fail(f"{name}: {actor} community {community!r} is not a whole number")
    print(f"{name}: {len(nodes)} nodes, {edge_count} edges, attributes as the server gives them")


def main():
    expected = json.load(open(sys.argv[1]))
    folder = sys.argv[2]

    g = nx.read_graphml(f"{folder}/firm.graphml")
    if not g.is_directed():
        fail("networkx read_graphml: the firm network should be directed")
    check_firm("networkx read_graphml", dict(g.nodes(data=True)), g.number_of_edges(), expected)

    g = nx.read_gexf(f"{folder}/firm.gexf")
    check_firm("networkx read_gexf", dict(g.nodes(data=True)), g.number_of_edges(), expected)

    with open(f"{folder}/firm.json") as f:
        g = nx.node_link_graph(json.load(f), edges="edges")
    check_firm("networkx node_link_graph", dict(g.nodes(data=True)), g.number_of_edges(), expected)

    g = igraph.Graph.Read_GraphML(f"{folder}/firm.graphml")
    # igraph gives every vertex every attribute: a missing one reads as ""
    # (strings) or NaN (numbers).
    def given(value):
        missing = value == "" or (isinstance(value, float) and math.isnan(value))
        return None if missing else value
    nodes = {v["id"]: {k: given(x) for k, x in v.attributes().items()} for v in g.vs}
    check_firm("igraph Read_GraphML", nodes, g.ecount(), expected)

    cluster = expected["cluster"]
    g = nx.read_graphml(f"{folder}/cluster.graphml")
    if (g.number_of_nodes(), g.number_of_edges()) != (cluster["nodes"], cluster["edges"]):
        fail(f"cluster layer: {g.number_of_nodes()} nodes and {g.number_of_edges()} edges, "
             f"the server has {cluster['nodes']} and {cluster['edges']}")
    for cid, stage in cluster["stages"].items():
        if g.nodes[cid].get("stage") != stage:
            fail(f"cluster layer: {cid} stage {g.nodes[cid].get('stage')!r}, the server says {stage!r}")
    for u, v, data in g.edges(data=True):
        key = "|".join(sorted((u, v)))
        if not close(data["weight"], cluster["weights"][key]):
            fail(f"cluster layer: edge {key} weight {data['weight']}, the server says {cluster['weights'][key]}")
    print(f"cluster layer: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges, stages and weights as the server gives them")


if __name__ == "__main__":
    main()
