"""Side-by-side analysis benchmark: clusternet vs python-igraph, in one run, on
the same generated scale-free graphs (Barabási–Albert, written by the Rust
bench driver). Each measurement runs in its own process, which reports the
algorithm's wall time (graph loading excluded) and its own peak RSS.

    python3 benches/compare.py            # all cases, 3 runs each
    RUNS=1 python3 benches/compare.py     # quicker
    CASES=pagerank python3 benches/compare.py

igraph is optional: without it only clusternet's figures are printed.
"""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAPHS = os.path.join(ROOT, "target", "bench-graphs")
RUNS = int(os.environ.get("RUNS", "3"))

# name: (nodes, edges per node)
SIZES = {"10k_50k": (10_000, 5), "1m_10m": (1_000_000, 10)}
# case: (algorithm, graph, directed, goal)
CASES = [
    ("pagerank", "1m_10m", "PageRank, directed, 1M nodes / 10M edges"),
    ("betweenness", "10k_50k", "exact betweenness, 10k nodes / 50k edges"),
    ("betweenness256", "1m_10m", "betweenness from 256 pivots, 1M / 10M"),
    ("louvain", "1m_10m", "Louvain, 1M / 10M"),
]

IGRAPH_RUNNER = r"""
import json, resource, sys, time
import igraph as ig
algorithm, path = sys.argv[1], sys.argv[2]
directed = algorithm == "pagerank"
g = ig.Graph.Read_Edgelist(path, directed=directed)
t = time.perf_counter()
if algorithm == "pagerank":
    x = g.pagerank(directed=True, damping=0.85)  # PRPACK
    checksum, detail = sum(x), "prpack"
elif algorithm == "betweenness":
    x = g.betweenness(directed=False)
    checksum, detail = sum(x), ""
elif algorithm == "betweenness256":
    n = g.vcount()
    pivots = list(range(0, n, n // 256))[:256]
    x = g.betweenness(directed=False, sources=pivots)
    checksum, detail = sum(x), "256 evenly spaced sources"
elif algorithm == "louvain":
    c = g.community_multilevel()
    checksum, detail = c.modularity, "communities %d" % len(c)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"tool": "igraph " + ig.__version__, "algorithm": algorithm, "seconds": seconds,
                  "peak_rss_mib": peak, "checksum": checksum, "detail": detail}))
"""


def driver():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "analysis", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "analysis" and msg.get("executable"):
            return msg["executable"]
    sys.exit("cannot find the analysis bench binary")


def graph(binary, name):
    os.makedirs(GRAPHS, exist_ok=True)
    path = os.path.join(GRAPHS, name + ".txt")
    if not os.path.exists(path):
        nodes, per_node = SIZES[name]
        subprocess.run([binary, "generate", str(nodes), str(per_node), "7", path], check=True)
    return path


def measure(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    try:
        import igraph  # noqa: F401
        have_igraph = True
    except ImportError:
        have_igraph = False
        print("python-igraph is not installed: clusternet figures only (pip install python-igraph)")
    binary = driver()
    wanted = os.environ.get("CASES", "").split(",") if os.environ.get("CASES") else None
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {cpus} CPUs, {mem:.0f} GiB; {RUNS} runs per case, medians; time excludes loading the graph")
    rows = []
    for algorithm, size, title in CASES:
        if wanted and algorithm not in wanted:
            continue
        path = graph(binary, size)
        ours, theirs = [], []
        for _ in range(RUNS):
            ours.append(measure([binary, "run", algorithm, path]))
            if have_igraph:
                theirs.append(measure([sys.executable, "-c", IGRAPH_RUNNER, algorithm, path]))
        o = statistics.median(r["seconds"] for r in ours)
        o_rss = max(r["peak_rss_mib"] for r in ours)
        line = f"| {title} | {o:.2f} s | {o_rss:.0f} MiB |"
        if theirs:
            t = statistics.median(r["seconds"] for r in theirs)
            t_rss = max(r["peak_rss_mib"] for r in theirs)
            line += f" {t:.2f} s | {t_rss:.0f} MiB | {t / o:.2f}x |"
        rows.append(line)
        print(json.dumps({"case": title, "clusternet": ours, "igraph": theirs}), file=sys.stderr)
    print("| case | clusternet | clusternet peak RSS | igraph | igraph peak RSS | speed-up (igraph time / ours) |")
    print("|---|---|---|---|---|---|")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
