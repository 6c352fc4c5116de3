"""The node under many clients, per backend and model size, with same-run baselines.

Examples (from the repository root):
  python -m bench.serve_throughput --device cuda --json out.json --out out.md   # a lent GPU
  python -m bench.serve_throughput --quick --clients 1,8 --models default --backends torch,onnx

What it measures (random weights; timing does not depend on training):

* baselines, this run: the eager torch forward of the paper configuration at batch 1 with one
  shared mask (the reference formulation) on ``--device``; a ZeroMQ DEALER-ROUTER echo round
  trip to a second process.
* per model size (``default``: width 128; ``paper``: width 512; 2+1 layers, L = 4) and backend
  (``torch`` eager, ``torch-graphs`` one CUDA graph per batch bucket, ``torch-graphs-bf16``,
  ``onnx`` on the CUDA provider, ``onnx-tensorrt``), a node in its own process:
  - batch 1: one client, one request at a time, p50/p99 of the ``act`` round trip;
  - throughput at each ``--clients`` count: the clients are spread over ``--client-procs``
    processes, each running its share as DEALER sockets with one request in flight on one
    poller (so the client side is not the bottleneck), all starting together for
    ``--duration-s``: actions/s, p50/p99 latency, the mean batch the node formed, and the
    node's own stage timings from its ``stats`` (decode, queue, inference, encode: p50 over the
    node's last ``stats_window`` samples, taken right after the point).

A backend whose GPU provider does not load here is skipped with the reason. The results are a
JSON file (``--json``) and a markdown section (``--out``, or ``--docs`` for the
``serve-throughput`` section of docs/benchmarks.md); ``--render JSON`` rewrites the markdown from
a JSON file brought back from another machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

#: backend name -> BackendConfig fields
BACKENDS: dict[str, dict[str, Any]] = {
    "torch": {"backend": "torch", "cuda_graphs": False},
    "torch-graphs": {"backend": "torch", "cuda_graphs": True},
    "torch-graphs-bf16": {"backend": "torch", "cuda_graphs": True, "precision": "bf16"},
    "onnx": {"backend": "onnx", "tensorrt": False},
    "onnx-tensorrt": {"backend": "onnx", "tensorrt": True},
}
SECTION = "serve-throughput"


# -- clients, in their own processes (numpy, pyzmq and the client package only) ----------------
def _client_worker(commands: Any, results: Any) -> None:
    """Run throughput points on command: ("run", endpoint, sockets, start_at, duration_s)."""
    while True:
        command = commands.get()
        if command[0] == "stop":
            return
        results.put(_run_clients(*command[1:]))


def _run_clients(endpoint: str, sockets: int, start_at: float, duration_s: float) -> dict[str, Any]:
    import zmq

    from mtm_robot_client import protocol as wire
    from mtm_robot_client.client import act_request

    rng = np.random.default_rng(os.getpid())
    header, arrays = act_request(
        "return_conditioned",
        rng.normal(size=24).astype(np.float32),
        history_states=rng.normal(size=(3, 24)).astype(np.float32),
        history_actions=rng.normal(size=(3, 6)).astype(np.float32),
        return_target=1.0,
    )
    context = zmq.Context()
    poller = zmq.Poller()
    pool = []
    for i in range(sockets):
        socket = context.socket(zmq.DEALER)
        socket.linger = 0
        socket.connect(endpoint)
        poller.register(socket, zmq.POLLIN)
        # one request in flight per socket: its id can stay fixed, its frames encoded once
        pool.append((socket, [b"", *wire.encode({**header, "id": i}, arrays)]))
    for socket, _ in pool:
        socket.poll(10_000, zmq.POLLOUT)
    sent_at: dict[Any, float] = {}
    frames_of = dict(pool)
    latencies: list[float] = []
    in_window = errors = 0
    time.sleep(max(0.0, start_at - time.monotonic()))
    end = start_at + duration_s
    for socket, frames in pool:
        socket.send_multipart(frames)
        sent_at[socket] = time.monotonic()
    drain_until = end + 10.0
    while sent_at and time.monotonic() < drain_until:
        for socket, _ in poller.poll(1000):
            reply = socket.recv_multipart()
            now = time.monotonic()
            latencies.append(now - sent_at[socket])
            if json.loads(reply[1]).get("status") != "ok":
                errors += 1
            if now < end:
                in_window += 1
                socket.send_multipart(frames_of[socket])
                sent_at[socket] = time.monotonic()
            else:
                del sent_at[socket]
    for socket, _ in pool:
        socket.close()
    context.term()
    return {
        "in_window": in_window,
        "errors": errors,
        "lost": len(sent_at),
        "latencies_us": (np.asarray(latencies) * 1e6).astype(np.float32),
    }


class ClientPool:
    """``procs`` spawned client processes, reused for every point."""

    def __init__(self, procs: int) -> None:
        spawn = mp.get_context("spawn")
        self.commands = [spawn.Queue() for _ in range(procs)]
        self.results = spawn.Queue()
        self.procs = [
            spawn.Process(target=_client_worker, args=(q, self.results), daemon=True)
            for q in self.commands
        ]
        for p in self.procs:
            p.start()

    def run(self, endpoint: str, clients: int, duration_s: float) -> dict[str, Any]:
        used = min(clients, len(self.procs))
        shares = [clients // used + (i < clients % used) for i in range(used)]
        start_at = time.monotonic() + 1.0  # time for every process to connect its sockets
        for queue, share in zip(self.commands, shares):
            queue.put(("run", endpoint, share, start_at, duration_s))
        parts = [self.results.get(timeout=duration_s + 60) for _ in shares]
        latencies = np.concatenate([np.asarray(p["latencies_us"]) for p in parts]) / 1e3
        return {
            "clients": clients,
            "client_procs": used,
            "actions_per_s": sum(p["in_window"] for p in parts) / duration_s,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "replies": len(latencies),
            "errors": sum(p["errors"] for p in parts),
            "lost": sum(p["lost"] for p in parts),
        }

    def close(self) -> None:
        for queue in self.commands:
            queue.put(("stop",))
        for p in self.procs:
            p.join(10)


# -- the node ---------------------------------------------------------------------------------
def _node_process(checkpoint: str, backend: dict[str, Any], queue: Any) -> None:
    import logging
    import signal

    from mtm_robot.serving.config import BackendConfig, ServeConfig
    from mtm_robot.serving.server import InferenceNode

    logging.basicConfig(level=logging.WARNING)
    config = ServeConfig(
        checkpoint=checkpoint,
        bind="tcp://127.0.0.1:*",
        backend=BackendConfig(**backend),
        max_queue=65_536,
    )
    node = InferenceNode(config)
    queue.put(node.start())
    signal.signal(signal.SIGTERM, lambda *_: node.request_stop())
    node.serve_forever()


def skip_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run as named on ``device`` here, or None."""
    if device == "cpu":
        return None  # the dry run: every name runs (graphs fall back to eager on a CPU)
    fields = BACKENDS[backend]
    if fields["backend"] != "onnx":
        return None
    import onnxruntime as ort

    from mtm_robot.serving.backends import choose_providers, cuda_devices, provider_library_error

    wanted, skipped = choose_providers(
        "cuda",
        ort.get_available_providers(),
        cuda_devices(),
        provider_library_error,
        fields["tensorrt"],
    )
    expected = "TensorrtExecutionProvider" if fields["tensorrt"] else "CUDAExecutionProvider"
    return None if wanted[0] == expected else "; ".join(skipped)


def direct_predict(checkpoint: Path, fields: dict[str, Any], n: int) -> Any:
    """``Predictor.predict`` at batch 1 in this process (no network): a Summary."""
    from bench.serve_latency import _time, request_fields
    from mtm_robot.inference import Context
    from mtm_robot.serving.backends import BackendConfig, load_engine

    engine = load_engine(checkpoint, BackendConfig(**fields))
    rng = np.random.default_rng(1)
    context = Context("return_conditioned", np.zeros(24, np.float32), **request_fields(rng))
    return _time(lambda: engine.predictor.predict(context), n)


def measure_backend(
    checkpoint: Path, backend: str, args: argparse.Namespace, clients: ClientPool
) -> dict[str, Any]:
    from bench.serve_latency import single_client_latency
    from mtm_robot_client import NodeClient

    fields = {**BACKENDS[backend], "device": args.device, "max_batch": args.max_batch}
    direct = direct_predict(checkpoint, {**fields, "max_batch": 1}, args.latency_n)
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    process = spawn.Process(
        target=_node_process, args=(str(checkpoint), fields, queue), daemon=True
    )
    process.start()
    try:
        endpoint = queue.get(timeout=300)
        latency, stats = single_client_latency(endpoint, args.latency_n)
        with NodeClient(endpoint, timeout_ms=10_000) as probe:
            description = probe.metadata()["backend"]
        row: dict[str, Any] = {
            "backend": backend,
            "description": description,
            "direct": asdict(direct),
            "latency": asdict(latency),
            "latency_stages_us": stats["stages_us"],
            "points": [],
        }
        print(
            f"  {checkpoint.name}/{backend}: direct p50 {direct.p50_ms:.3f} ms; end-to-end "
            f"p50 {latency.p50_ms:.3f} ms p99 {latency.p99_ms:.3f} ms ({description})",
            flush=True,
        )
        for count in args.client_counts:
            with NodeClient(endpoint, timeout_ms=10_000) as probe:
                before = probe.stats()["batch"]["histogram"]
                point = clients.run(endpoint, count, args.duration_s)
                after = probe.stats()
            grown = {k: v - before.get(k, 0) for k, v in after["batch"]["histogram"].items()}
            batches = sum(grown.values())
            point["mean_batch"] = sum(int(k) * v for k, v in grown.items()) / max(batches, 1)
            point["stages_us"] = after["stages_us"]
            row["points"].append(point)
            print(
                f"    {count} clients: {point['actions_per_s']:.0f} actions/s, p50 "
                f"{point['p50_ms']:.2f} ms p99 {point['p99_ms']:.2f} ms, mean batch "
                f"{point['mean_batch']:.1f}, errors {point['errors']}",
                flush=True,
            )
        return row
    finally:
        process.terminate()
        process.join(30)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    import torch

    from bench.serve_latency import (
        eager_reference_forward,
        echo_round_trip,
        make_checkpoints,
        versions,
    )
    from mtm_robot.hardware import describe

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "command": "python -m bench.serve_throughput " + " ".join(sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": args.device,
        "hardware": describe(gpu=args.device == "cuda"),
        "software": versions(),
        "max_batch": args.max_batch,
        "duration_s": args.duration_s,
        "models": {},
        "skipped": {},
    }
    clients = ClientPool(args.client_procs)
    try:
        with tempfile.TemporaryDirectory(prefix="mtm-throughput-") as tmp:
            checkpoints = make_checkpoints(Path(tmp))
            print("baselines ...", flush=True)
            reference = eager_reference_forward(checkpoints["paper"], args.latency_n, args.device)
            echo = echo_round_trip(args.latency_n)
            result["baselines"] = {"eager_forward_paper": asdict(reference), "echo": asdict(echo)}
            print(
                f"  eager forward (paper, batch 1, {args.device}): p50 {reference.p50_ms:.3f} "
                f"ms; ZeroMQ echo p50 {echo.p50_ms:.3f} ms",
                flush=True,
            )
            for model in args.models:
                rows = result["models"].setdefault(model, [])
                for backend in args.backends:
                    reason = skip_reason(backend, args.device)
                    if reason is not None:
                        result["skipped"][backend] = reason
                        print(f"  {model}/{backend}: skipped ({reason})", flush=True)
                        continue
                    rows.append(measure_backend(checkpoints[model], backend, args, clients))
                    if args.json is not None:  # what is done survives a timeout
                        result["load_average"] = [round(load_before[0], 2), None]
                        _write_json(args.json, result)
    finally:
        clients.close()
    result["load_average"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    return result


def _write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


# -- report -----------------------------------------------------------------------------------
def _stage(stages: dict[str, Any], name: str) -> str:
    value = stages.get(name, {}).get("p50")
    return "-" if value is None else f"{value:.0f}"


def _runs_as(description: dict[str, Any]) -> str:
    """What the node actually ran (its ``metadata`` backend): graphs, providers, precision."""
    parts = [description.get("device", "?")]
    if description.get("cuda_graphs"):
        parts.append(f"{description.get('captures', '?')} CUDA graphs")
    if "providers" in description:
        parts.append(description["providers"][0].removesuffix("ExecutionProvider"))
    if description.get("precision", "fp32") != "fp32":
        parts.append(description["precision"])
    return ", ".join(parts)


def render(result: dict[str, Any]) -> str:
    """The markdown section for docs/benchmarks.md."""
    base = result["baselines"]
    ref, echo = base["eager_forward_paper"], base["echo"]
    smoke = result["device"] == "cpu"
    lines = [
        f"## Serving throughput and batch-1 latency on {result['device'].upper()}"
        + (" (smoke run, not a measurement)" if smoke else ""),
        "",
        f"Measured by `{result['command']}` on {result['date_utc']}.",
        "",
        f"- Hardware: {result['hardware']}; load average {result['load_average'][0]} before, "
        f"{result['load_average'][1]} after (None: the run was cut short).",
        f"- Software: {result['software']}.",
        f"- Node max batch {result['max_batch']}, greedy batching; clients spread over "
        "processes, one request in flight per client; `return_conditioned` with 3 steps of "
        "history, 24-d state, 6-d action, L = 4.",
    ]
    if smoke:
        lines.append(
            "- A smoke run on a loaded shared machine: it proves the benchmark runs end to "
            "end; its numbers are not figures to quote."
        )
    lines += [
        "",
        "| same-run baseline | p50 ms | p99 ms |",
        "| --- | ---: | ---: |",
        f"| eager torch forward, paper config, batch 1 ({result['device']}) "
        f"| {ref['p50_ms']:.3f} | {ref['p99_ms']:.3f} |",
        f"| ZeroMQ DEALER-ROUTER echo, two processes | {echo['p50_ms']:.3f} "
        f"| {echo['p99_ms']:.3f} |",
        "",
        "| model | backend | runs as | direct p50 ms | `act` e2e p50 / p99 ms | node decode / "
        "queue / inference / encode p50 us |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for model, rows in result["models"].items():
        for row in rows:
            stages = " / ".join(
                _stage(row["latency_stages_us"], s)
                for s in ("decode", "queue", "inference", "encode")
            )
            lines.append(
                f"| {model} | {row['backend']} | {_runs_as(row['description'])} "
                f"| {row['direct']['p50_ms']:.3f} "
                f"| {row['latency']['p50_ms']:.3f} / {row['latency']['p99_ms']:.3f} | {stages} |"
            )
    lines += [
        "",
        "| model | backend | clients (procs) | actions/s | p50 / p99 ms | mean batch | node "
        "decode / queue / inference / encode p50 us |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, rows in result["models"].items():
        for row in rows:
            for p in row["points"]:
                stages = " / ".join(
                    _stage(p["stages_us"], s) for s in ("decode", "queue", "inference", "encode")
                )
                lines.append(
                    f"| {model} | {row['backend']} | {p['clients']} ({p['client_procs']}) "
                    f"| {p['actions_per_s']:.0f} | {p['p50_ms']:.2f} / {p['p99_ms']:.2f} "
                    f"| {p['mean_batch']:.1f} | {stages} |"
                )
    for backend, reason in result["skipped"].items():
        lines.append(f"\n`{backend}` skipped: {reason}.")
    if not smoke:
        lines += ["", "Against the goals of issue 17 (this run):", ""]
        for row in result["models"].get("paper", []):
            p50 = row["latency"]["p50_ms"]
            lines.append(
                f"- paper, {row['backend']}: `act` p50 {p50:.3f} ms (goal <= 0.4 ms: "
                f"{'met' if p50 <= 0.4 else 'not met'})."
            )
        for model, rows in result["models"].items():
            for row in rows:
                best = max(
                    (p for p in row["points"] if p["clients"] == 256),
                    default=None,
                    key=lambda p: p["actions_per_s"],
                )
                if best is not None:
                    lines.append(
                        f"- {model}, {row['backend']}: {best['actions_per_s']:.0f} actions/s at "
                        f"256 clients (goal >= 100,000: "
                        f"{'met' if best['actions_per_s'] >= 1e5 else 'not met'})."
                    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", default="default,paper")
    parser.add_argument("--backends", default="torch,torch-graphs,onnx,onnx-tensorrt")
    parser.add_argument("--clients", default="1,8,64,256", help="concurrent client counts")
    parser.add_argument("--client-procs", type=int, default=8, help="client processes")
    parser.add_argument("--duration-s", type=float, default=2.0, help="per throughput point")
    parser.add_argument("--latency-n", type=int, default=2000, help="batch-1 requests timed")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="short points (smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here")
    parser.add_argument("--docs", action="store_true", help=f"write docs/benchmarks.md ({SECTION})")
    parser.add_argument("--render", type=Path, default=None, help="markdown from this JSON only")
    args = parser.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
    else:
        unknown = [b for b in args.backends.split(",") if b not in BACKENDS]
        if unknown:
            parser.error(f"unknown backends {unknown}; expected some of {list(BACKENDS)}")
        args.models = args.models.split(",")
        args.backends = args.backends.split(",")
        args.client_counts = [int(c) for c in args.clients.split(",")]
        if args.quick:
            args.duration_s, args.latency_n = min(args.duration_s, 0.5), min(args.latency_n, 200)
        result = run(args)
        if args.json is not None:
            _write_json(args.json, result)
            print(f"wrote {args.json}")
    text = render(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    if args.docs:
        from mtm_robot.report.page import write_section

        write_section(SECTION, text)
        print(f"wrote the {SECTION} section of docs/benchmarks.md")
    if args.out is None and not args.docs:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
