"""Profile the batch-1 request path: the client under cProfile, the node under py-spy.

Examples:
  python bench/serve_profile.py --backend onnx --clients 1 --requests 3000
  python bench/serve_profile.py --backend torch --clients 8 --top 25

The node (default model: width 128, 2+1 layers, 24-d states, 6-d actions, L = 4, random
weights) runs in a child process; once it is warm, ``py-spy record --threads --idle
--nonblocking`` samples it at 500 Hz when py-spy is installed (``pip install py-spy``). The
clients (``return_conditioned``, 3 steps of history) run in this process under cProfile. It
prints the client's top functions by own time and the node's by samples (per thread), and
keeps the raw profiles in ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from serve_latency import make_checkpoints, request_fields  # bench/ is on the path


def node_command(checkpoint: Path, backend: str, endpoint: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mtm_robot.serving",
        "--checkpoint",
        str(checkpoint),
        "--bind",
        endpoint,
        "--backend",
        backend,
        "--parent-pid",
        str(os.getpid()),
    ]


def wait_ready(endpoint: str) -> None:
    from mtm_robot_client import NodeClient

    with NodeClient(endpoint) as client:
        client.wait_ready(300)


def run_clients(endpoint: str, clients: int, requests: int) -> float:
    """``clients`` clients, each one ``act`` at a time, ``requests`` in all; returns seconds."""
    import zmq

    from mtm_robot_client import NodeClient

    rng = np.random.default_rng(2)
    fields = request_fields(rng)
    state = rng.normal(size=24).astype(np.float32)
    context = zmq.Context()
    pool = [NodeClient(endpoint, timeout_ms=10_000, context=context) for _ in range(clients)]
    for _ in range(100):
        pool[0].act("return_conditioned", state, **fields)
    start = time.perf_counter()
    if clients == 1:
        for _ in range(requests):
            pool[0].act("return_conditioned", state, **fields)
    else:
        in_flight = {c: c.submit("return_conditioned", state, **fields) for c in pool}
        done = 0
        while done < requests:
            for client, rid in list(in_flight.items()):
                if client.poll(rid, 0) is not None:
                    done += 1
                    in_flight[client] = client.submit("return_conditioned", state, **fields)
            time.sleep(0)
        for client, rid in in_flight.items():
            client.poll(rid, 10_000)
    elapsed = time.perf_counter() - start
    for client in pool:
        client.close()
    context.term()
    return elapsed


def node_top(raw: Path, top: int) -> list[str]:
    """Own-time samples per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = frames[0]
        own[f"{thread} | {frames[-1]}"] += int(count)
        total += int(count)
    return [f"{n / total * 100:5.1f}%  {name}" for name, n in own.most_common(top)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"))
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mtm-serve-profile"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoints(args.out / "checkpoints")["default"]
    from mtm_robot.serving.process import free_loopback_port

    endpoint = f"tcp://127.0.0.1:{free_loopback_port()}"
    command = node_command(checkpoint, args.backend, endpoint)
    raw = args.out / f"node-{args.backend}-{args.clients}.txt"
    log = open(args.out / "node.log", "wb")  # noqa: SIM115 - the child's for its lifetime
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    spy: subprocess.Popen[bytes] | None = None
    profile = cProfile.Profile()
    try:
        wait_ready(endpoint)
        if shutil.which("py-spy"):  # attached once warm: sampling never slows the start-up
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(node.pid),
                    "--threads",
                    "--idle",
                    "--nonblocking",
                    "-r",
                    "500",
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        profile.enable()
        elapsed = run_clients(endpoint, args.clients, args.requests)
        profile.disable()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile and detaches
            spy.wait(60)
        node.send_signal(signal.SIGTERM)
        node.wait(60)
        log.close()
    print(
        f"{args.requests} requests, {args.clients} clients, {args.backend}: "
        f"{args.requests / elapsed:.0f} req/s ({elapsed / args.requests * 1e6:.0f} us each); "
        f"load {os.getloadavg()[0]:.2f}"
    )
    client_file = args.out / f"client-{args.backend}-{args.clients}.prof"
    profile.dump_stats(client_file)
    print(f"\nclient (cProfile, own time; {client_file}):")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    if raw.exists():
        print(f"node (py-spy samples, own time by thread | function; {raw}):")
        print("\n".join(node_top(raw, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
