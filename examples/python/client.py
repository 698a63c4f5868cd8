"""A clusternet client in Python, generated from proto/.

Lists the clusters, streams a PageRank analysis, and follows alerts for a
few seconds:

    python examples/python/client.py --server 127.0.0.1:50051

The gRPC code is generated from proto/ on first run (into
examples/python/gen, with grpcio-tools); `pip install -r
examples/python/requirements.txt` first.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GEN = os.path.join(HERE, "gen")


def generate():
    """Generates the message and stub modules from proto/ (once)."""
    protos = [os.path.join("clusternet", "v1", f)
              for f in sorted(os.listdir(os.path.join(ROOT, "proto", "clusternet", "v1")))
              if f.endswith(".proto")]
    if os.path.exists(os.path.join(GEN, "clusternet", "v1", "analysis_service_pb2_grpc.py")):
        return
    os.makedirs(GEN, exist_ok=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{os.path.join(ROOT, 'proto')}",
                    f"--python_out={GEN}", f"--grpc_python_out={GEN}", *protos], check=True)


generate()
sys.path.insert(0, GEN)

import grpc  # noqa: E402

from clusternet.v1 import (  # noqa: E402
    alert_pb2, alert_pb2_grpc, algorithms_pb2, analysis_pb2, analysis_service_pb2_grpc,
    network_pb2, network_pb2_grpc,
)

# Analyses stream batches of up to 1,000 rows and an export or a large
# listing can pass gRPC's default 4 MiB per message: raise the limit.
OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="host:port of a clusternet server")
    parser.add_argument("--token", help="bearer token, for a server that checks them")
    parser.add_argument("--follow-seconds", type=float, default=3.0, help="how long to follow alerts")
    args = parser.parse_args()
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []

    with grpc.insecure_channel(args.server, options=OPTIONS) as channel:
        network = network_pb2_grpc.NetworkServiceStub(channel)
        analysis = analysis_service_pb2_grpc.AnalysisServiceStub(channel)
        alerts = alert_pb2_grpc.AlertServiceStub(channel)

        # 1. The clusters, page by page.
        token = ""
        while True:
            page = network.ListClusters(network_pb2.ListClustersRequest(page_size=100, page_token=token),
                                        metadata=metadata)
            for cluster in page.clusters:
                print(f"cluster {cluster.id}: {cluster.name} ({len(cluster.sites)} sites)")
            token = page.next_page_token
            if not token:
                break

        # 2. PageRank, streamed: progress, row batches, and the summary last.
        request = algorithms_pb2.CentralityRequest(
            measure=algorithms_pb2.CENTRALITY_MEASURE_PAGERANK, top_k=5,
            filter=analysis_pb2.NetworkFilter(cluster_ids=["kunshan-electronics"]))
        for message in analysis.Centrality(request, metadata=metadata, timeout=60):
            part = message.WhichOneof("event")
            if part == "rows":
                for row in message.rows.rows:
                    print(f"pagerank {row.rank} {row.node_id} {row.value:.4f}")
            elif part == "summary":
                s = message.summary
                print(f"summary revision {s.revision}: {s.nodes} nodes, {s.edges} edges, {s.rows} rows")

        # 3. Alerts from the first one kept, for a few seconds (a deadline
        # ends the stream; a follower resumes from the last sequence + 1).
        seen = 0
        try:
            for message in alerts.WatchAlerts(alert_pb2.WatchAlertsRequest(from_sequence=1),
                                              metadata=metadata, timeout=args.follow_seconds):
                a = message.alert
                seen += 1
                print(f"alert {a.sequence} {alert_pb2.AlertKind.Name(a.kind)}: {a.message}")
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        print(f"followed alerts for {args.follow_seconds} s: {seen} received")


if __name__ == "__main__":
    main()
