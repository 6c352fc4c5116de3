"""End-to-end latency and throughput of the inference node, against baselines from the same run.

Examples:
  python bench/serve_latency.py                       # full run, writes docs/benchmarks.md
  python bench/serve_latency.py --quick --out /tmp/serving.md

What it measures (random weights; timing does not depend on training):

* baselines, in this process: a plain eager torch forward of the reference (paper)
  configuration at batch 1 with one shared return-conditioned mask (the reference
  formulation); ``Predictor.predict`` at batch 1 with no network, per backend and model size;
  a raw ZeroMQ DEALER-ROUTER echo round trip (~400 B) to a second process.
* the node, in a second process, per backend (torch, onnx) and model size (paper: width 512,
  2+1 layers; default: width 128, 2+1 layers; 24-d states, 6-d actions, L = 4):
  - latency: one client, one request at a time (return_conditioned, full history): p50/p99 of
    the client-side round trip (encode, send, node, receive, decode);
  - throughput: N concurrent clients (DEALER sockets in this process), each keeping one request
    in flight, for a fixed duration: actions/s, p50/p99 latency, mean batch the node formed.

Every figure is a wall-clock measurement on a shared machine; the load average is recorded.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot.hardware import describe
from mtm_robot.report.page import write_section

SPEC_DIMS = {"states": 24, "actions": 6, "returns": 1}
MODELS = {
    "paper": {"width": 512, "encoder_layers": 2, "decoder_layers": 1, "heads": 4},
    "default": {"width": 128, "encoder_layers": 2, "decoder_layers": 1, "heads": 4},
}


@dataclass
class Summary:
    p50_ms: float
    p99_ms: float
    count: int

    @classmethod
    def of(cls, seconds: list[float]) -> Summary:
        values = np.asarray(seconds) * 1e3
        return cls(float(np.percentile(values, 50)), float(np.percentile(values, 99)), len(values))


def _time(fn: Callable[[], object], n: int, warmup: int = 20) -> Summary:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Summary.of(samples)


# -- checkpoints ----------------------------------------------------------------------------------
def make_checkpoints(directory: Path) -> dict[str, Path]:
    import torch

    from mtm_robot.data.normalize import Normalizer
    from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
    from mtm_robot.training.checkpoint import save_checkpoint

    out = {}
    rng = np.random.default_rng(0)
    spec = DataSpec(dict(SPEC_DIMS), segment_length=4)
    normalizer = Normalizer.fit({n: rng.normal(size=(256, d)) for n, d in SPEC_DIMS.items()})
    for name, sizes in MODELS.items():
        torch.manual_seed(0)
        model = MTM(spec, ModelConfig(dropout=0.1, **sizes)).eval()
        out[name] = save_checkpoint(directory / name, model, normalizer, {"model_id": name})
    return out


def request_fields(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "history_states": rng.normal(size=(3, 24)).astype(np.float32),
        "history_actions": rng.normal(size=(3, 6)).astype(np.float32),
        "return_target": 1.0,
    }


# -- baselines ------------------------------------------------------------------------------------
def eager_reference_forward(checkpoint: Path, n: int, device: str = "cpu") -> Summary:
    import torch

    from mtm_robot.model import masks
    from mtm_robot.training.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).model.to(device)
    names = list(SPEC_DIMS)
    mask = {
        k: torch.from_numpy(v).to(device) for k, v in masks.return_conditioned(names, 4, 3).items()
    }
    inputs = {k: torch.randn(1, 4, d, device=device) for k, d in SPEC_DIMS.items()}

    def forward() -> None:
        model(inputs, mask)
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        return _time(forward, n)


def backend_config(backend: str, **fields: Any) -> Any:
    """``torch``, ``onnx`` or ``onnx-int8`` -> BackendConfig."""
    from mtm_robot.serving.backends import BackendConfig

    name, _, quantize = backend.partition("-")
    return BackendConfig(backend=name, quantize=quantize or "none", **fields)


def direct_predict(checkpoint: Path, backend: str, n: int, device: str = "cpu") -> Summary:
    from mtm_robot.inference import Context
    from mtm_robot.serving.backends import load_engine

    engine = load_engine(checkpoint, backend_config(backend, max_batch=1, device=device))
    fields = request_fields(np.random.default_rng(1))
    context = Context("return_conditioned", np.zeros(24, np.float32), **fields)
    return _time(lambda: engine.predictor.predict(context), n)


def paced_predict(checkpoint: Path, backend: str, n: int, gap_s: float = 0.0005) -> Summary:
    """``Predictor.predict`` as the node sees it at batch 1: each call after an idle gap of
    ``gap_s`` (untimed), so caches and the core have cooled as between two requests."""
    from mtm_robot.inference import Context
    from mtm_robot.serving.backends import load_engine

    engine = load_engine(checkpoint, backend_config(backend, max_batch=1))
    fields = request_fields(np.random.default_rng(1))
    context = Context("return_conditioned", np.zeros(24, np.float32), **fields)
    samples = []
    for i in range(n + 20):
        time.sleep(gap_s)
        start = time.perf_counter()
        engine.predictor.predict(context)
        if i >= 20:
            samples.append(time.perf_counter() - start)
    return Summary.of(samples)


def int8_deviation(checkpoint: Path) -> tuple[float, float]:
    """(max |int8 - float32| over predicted actions, RMS of the float32 actions): 64 contexts."""
    from mtm_robot.inference import Context
    from mtm_robot.serving.backends import load_engine

    exact = load_engine(checkpoint, backend_config("torch", max_batch=64), warm=False)
    int8 = load_engine(checkpoint, backend_config("onnx-int8", max_batch=64), warm=False)
    rng = np.random.default_rng(4)
    contexts = [
        Context("return_conditioned", rng.normal(size=24).astype(np.float32), **request_fields(rng))
        for _ in range(64)
    ]
    a = np.stack([p.action_chunk for p in exact.predictor.predict_batch(contexts)])
    b = np.stack([p.action_chunk for p in int8.predictor.predict_batch(contexts)])
    return float(np.abs(a - b).max()), float(np.sqrt((a**2).mean()))


def _echo_server(port_queue: Any) -> None:
    import zmq

    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port_queue.put(router.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        frames = router.recv_multipart()
        if frames[-1] == b"stop":
            break
        router.send_multipart(frames)
    router.close()
    context.term()


def echo_round_trip(n: int) -> Summary:
    import zmq

    spawn = mp.get_context("spawn")
    ports = spawn.Queue()
    server = spawn.Process(target=_echo_server, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=60)
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(f"tcp://127.0.0.1:{port}")
    payload = [b"", b"h" * 200, b"a" * 200]

    def once() -> None:
        dealer.send_multipart(payload)
        dealer.recv_multipart()

    summary = _time(once, n, warmup=100)
    dealer.send_multipart([b"", b"stop"])
    server.join(10)
    dealer.close()
    context.term()
    return summary


# -- the node -------------------------------------------------------------------------------------
def _node_process(
    checkpoint: str, backend: str, max_batch: int, max_wait_us: int, device: str, queue: Any
) -> None:
    import logging

    from mtm_robot.serving.server import InferenceNode, ServeConfig

    logging.basicConfig(level=logging.WARNING)
    config = ServeConfig(
        checkpoint=checkpoint,
        bind="tcp://127.0.0.1:*",
        backend=backend_config(backend, max_batch=max_batch, threads=1, device=device),
        max_wait_us=max_wait_us,
    )
    node = InferenceNode(config)
    queue.put(node.start())
    import signal

    signal.signal(signal.SIGTERM, lambda *_: node.request_stop())
    node.serve_forever()


def start_node(
    checkpoint: Path, backend: str, max_batch: int, max_wait_us: int, device: str = "cpu"
) -> tuple[Any, str]:
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    process = spawn.Process(
        target=_node_process,
        args=(str(checkpoint), backend, max_batch, max_wait_us, device, queue),
        daemon=True,
    )
    process.start()
    return process, queue.get(timeout=300)


#: Per-request stages of the batch-1 path (``stage_samples``): the client's, the node's (from the
#: reply's ``timings_us``) and what is left (node encode, transport both ways, client decode).
STAGES = {
    "client_send": "client: build + encode + send",
    "node_decode": "node: receive + decode + checks",
    "node_queue": "node: hand-off to the forward",
    "node_inference": "node: predict (layout, forward, read-out)",
    "rest": "node encode + transport + client receive/decode",
}


def single_client_latency(endpoint: str, n: int) -> tuple[Summary, dict[str, Any]]:
    """Sequential ``act`` round trips: (end-to-end summary, node stats)."""
    summary, stats, _ = single_client_stages(endpoint, n)
    return summary, stats


def single_client_stages(
    endpoint: str, n: int
) -> tuple[Summary, dict[str, Any], dict[str, list[float]]]:
    """Sequential ``act`` round trips: (end-to-end summary, node stats, per-stage seconds)."""
    from mtm_robot_client import NodeClient

    rng = np.random.default_rng(2)
    fields = request_fields(rng)
    state = rng.normal(size=24).astype(np.float32)
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    total: list[float] = []
    with NodeClient(endpoint, timeout_ms=10_000) as client:
        client.wait_ready(120)
        for i in range(n + 50):  # the first 50: warm-up
            start = time.perf_counter()
            rid = client.submit("return_conditioned", state, **fields)
            sent = time.perf_counter()
            reply = client.poll(rid, 10_000)
            done = time.perf_counter()
            assert reply is not None and reply.ok, reply
            if i < 50:
                continue
            node = reply.timings_us
            total.append(done - start)
            stages["client_send"].append(sent - start)
            stages["node_decode"].append(node["decode"] * 1e-6)
            stages["node_queue"].append(node["queue"] * 1e-6)
            stages["node_inference"].append(node["inference"] * 1e-6)
            stages["rest"].append(done - sent - node["server"] * 1e-6)
        stats = client.stats()
    return Summary.of(total), stats, stages


def added_over_bare(latency: Summary, direct: Summary) -> tuple[float, float]:
    """(p50, p99) ms the request path adds: end-to-end minus the same run's bare predict."""
    return latency.p50_ms - direct.p50_ms, latency.p99_ms - direct.p99_ms


def concurrent_throughput(endpoint: str, clients: int, duration_s: float) -> dict[str, Any]:
    """``clients`` DEALER clients, each with one request in flight, for ``duration_s``."""
    import zmq

    from mtm_robot_client import NodeClient

    context = zmq.Context()
    rng = np.random.default_rng(3)
    fields = request_fields(rng)
    state = rng.normal(size=24).astype(np.float32)
    pool = [NodeClient(endpoint, timeout_ms=10_000, context=context) for _ in range(clients)]
    pool[0].wait_ready(120)
    assert all(client.wait_connected(10) for client in pool)
    before = pool[0].stats()["batch"]
    poller = zmq.Poller()
    by_socket = {}
    for client in pool:
        poller.register(client._socket, zmq.POLLIN)
        by_socket[client._socket] = client
    in_flight: dict[NodeClient, tuple[int, float]] = {}
    for client in pool:
        in_flight[client] = (
            client.submit("return_conditioned", state, **fields),
            time.perf_counter(),
        )
    latencies: list[float] = []
    start = time.perf_counter()
    end = start + duration_s
    while True:
        for socket, _ in poller.poll(1000):
            client = by_socket[socket]
            rid, sent = in_flight[client]
            reply = client.poll(rid, 0)
            if reply is None:
                continue
            now = time.perf_counter()
            latencies.append(now - sent)
            if now < end:
                in_flight[client] = (client.submit("return_conditioned", state, **fields), now)
            else:
                del in_flight[client]
        if not in_flight:
            break
    elapsed = time.perf_counter() - start
    after = pool[0].stats()["batch"]
    for client in pool:
        client.close()
    context.term()
    batches = after["count"] - before["count"]
    requests = sum(int(k) * v for k, v in after["histogram"].items()) - sum(
        int(k) * v for k, v in before["histogram"].items()
    )
    summary = Summary.of(latencies)
    return {
        "clients": clients,
        "actions_per_s": len(latencies) / elapsed,
        "p50_ms": summary.p50_ms,
        "p99_ms": summary.p99_ms,
        "mean_batch": requests / max(batches, 1),
        "requests": len(latencies),
    }


# -- report ---------------------------------------------------------------------------------------
def hardware(device: str = "cpu") -> str:
    return describe(gpu=device == "cuda")


def versions() -> str:
    import onnxruntime
    import torch
    import zmq

    return (
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()}), numpy {np.__version__}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write to this file instead of the serving section of docs/benchmarks.md",
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent client counts")
    parser.add_argument("--duration-s", type=float, default=3.0, help="per throughput point")
    parser.add_argument(
        "--backends", default="torch,onnx,onnx-int8", help="onnx-int8: int8 weights"
    )
    parser.add_argument("--models", default="paper,default")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-us", type=int, default=0)
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: node and baselines on the GPU (e.g. --clients 1,32,256 --max-batch 256)",
    )
    args = parser.parse_args(argv)
    n_fast, n_slow = (200, 100) if args.quick else (2000, 500)
    duration = 1.0 if args.quick else args.duration_s
    client_counts = [int(c) for c in args.clients.split(",")]
    load_before = os.getloadavg()
    import torch

    torch.set_num_threads(1)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mtm-bench-") as tmp:
        checkpoints = make_checkpoints(Path(tmp))
        print("baselines ...", flush=True)
        reference = eager_reference_forward(checkpoints["paper"], n_slow, args.device)
        echo = echo_round_trip(n_fast)
        print(
            f"  eager reference forward (paper, batch 1): p50 {reference.p50_ms:.3f} ms "
            f"p99 {reference.p99_ms:.3f} ms",
            flush=True,
        )
        print(f"  DEALER-ROUTER echo: p50 {echo.p50_ms:.3f} ms p99 {echo.p99_ms:.3f} ms")
        deviations = {}
        if "onnx-int8" in args.backends.split(","):
            deviations = {m: int8_deviation(checkpoints[m]) for m in args.models.split(",")}
        rows = []
        split: list[tuple[str, str, Summary, Summary, dict[str, list[float]], Any, Summary]] = []
        throughput_rows = []
        for model in args.models.split(","):
            n = n_slow if model == "paper" else n_fast
            for backend in args.backends.split(","):
                direct = direct_predict(checkpoints[model], backend, n, args.device)
                paced = paced_predict(checkpoints[model], backend, min(n, 1000))
                process, endpoint = start_node(
                    checkpoints[model], backend, args.max_batch, args.max_wait_us, args.device
                )
                try:
                    latency, stats, samples = single_client_stages(endpoint, n)
                    stages = stats["stages_us"]
                    rows.append((model, backend, direct, latency, stages))
                    split.append((model, backend, direct, latency, samples, stages, paced))
                    print(
                        f"  {model}/{backend}: direct p50 {direct.p50_ms:.3f} ms; end-to-end "
                        f"p50 {latency.p50_ms:.3f} ms p99 {latency.p99_ms:.3f} ms",
                        flush=True,
                    )
                    for clients in client_counts:
                        result = concurrent_throughput(endpoint, clients, duration)
                        throughput_rows.append((model, backend, result))
                        print(
                            f"    {clients} clients: {result['actions_per_s']:.0f} actions/s, "
                            f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms, "
                            f"mean batch {result['mean_batch']:.2f}",
                            flush=True,
                        )
                finally:
                    process.terminate()
                    process.join(30)
    load_after = os.getloadavg()

    lines += [
        "## Serving: inference node latency and throughput",
        "",
        f"Measured by `python bench/serve_latency.py{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"- Hardware: {hardware(args.device)}. Shared machine: load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other jobs were running, "
        "so p99 figures include their interference).",
        f"- Software: {versions()}.",
        f"- Device {args.device}. Node in a second process, torch and ONNX Runtime with 1 "
        "intra-op thread, "
        f"max batch {args.max_batch}, max wait {args.max_wait_us} us; clients in this process.",
        "- Request: `return_conditioned`, 3 steps of history, 24-d state, 6-d action, L = 4; "
        "the reply carries the action, the action chunk and the predicted states.",
        "",
        "### Baselines (same run)",
        "",
        "| baseline | p50 ms | p99 ms |",
        "| --- | ---: | ---: |",
        f"| eager torch forward, paper config, batch 1, shared mask (reference formulation) "
        f"| {reference.p50_ms:.3f} | {reference.p99_ms:.3f} |",
        f"| ZeroMQ DEALER-ROUTER echo round trip, two processes, ~400 B "
        f"| {echo.p50_ms:.3f} | {echo.p99_ms:.3f} |",
        "",
        "### Batch-1 latency, one client, one request at a time",
        "",
        "`direct`: `Predictor.predict` in-process (normalise, slot layout, forward, "
        "denormalise), no network. `end-to-end`: client `act()` round trip through the node. "
        "Node stages: p50 from the node's own `stats` (decode, queue wait, inference, encode).",
        "",
        "| model | backend | direct p50 / p99 ms | end-to-end p50 / p99 ms "
        "| e2e p50 / eager reference p50 | node decode / queue / inference / encode p50 us |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for model, backend, direct, latency, stages in rows:
        stage_text = " / ".join(
            f"{stages[s]['p50']:.0f}" for s in ("decode", "queue", "inference", "encode")
        )
        lines.append(
            f"| {model} | {backend} | {direct.p50_ms:.3f} / {direct.p99_ms:.3f} "
            f"| {latency.p50_ms:.3f} / {latency.p99_ms:.3f} "
            f"| {latency.p50_ms / reference.p50_ms:.2f} | {stage_text} |"
        )
    lines += [
        "",
        "### Batch-1: what the request path adds to the model's own time (same run)",
        "",
        "`added` = end-to-end minus the same run's bare `Predictor.predict` (p50 - p50, "
        "p99 - p99). The split is per request, p50 / p99 in us: the client's own stage, the "
        "node's (from the reply's `timings_us`), and the rest (node encode, ZeroMQ both "
        "ways, client receive and decode); node encode alone is the node's `encode` stage. "
        f"Transport floor: the DEALER-ROUTER echo above ({echo.p50_ms * 1e3:.0f} us p50).",
        "",
        "| model | backend | bare p50 / p99 ms | end-to-end p50 / p99 ms | added p50 / p99 ms "
        "| "
        + " | ".join(STAGES.values())
        + " | node encode | bare after 0.5 ms idle, p50 / p99 ms |",
        "| --- | --- | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in STAGES)
        + " | ---: | ---: |",
    ]
    for model, backend, direct, latency, samples, stages, paced in split:
        add50, add99 = added_over_bare(latency, direct)
        cells = " | ".join(
            f"{np.percentile(samples[k], 50) * 1e6:.0f} / {np.percentile(samples[k], 99) * 1e6:.0f}"
            for k in STAGES
        )
        encode = stages["encode"]
        lines.append(
            f"| {model} | {backend} | {direct.p50_ms:.3f} / {direct.p99_ms:.3f} "
            f"| {latency.p50_ms:.3f} / {latency.p99_ms:.3f} | {add50:.3f} / {add99:.3f} "
            f"| {cells} | {encode['p50']:.0f} / {encode['p99']:.0f} "
            f"| {paced.p50_ms:.3f} / {paced.p99_ms:.3f} |"
        )
    for model, (worst, rms) in deviations.items():
        lines.append(
            f"\n`onnx-int8` ({model}): dynamic int8 weights are approximate: predicted actions "
            f"differ from float32 by up to {worst:.3g} (RMS of the actions {rms:.3g}) on 64 "
            "random contexts of this random-weight model; check a trained model with "
            "`launch/export_onnx.py --int8` before serving it."
        )
    lines += [
        "",
        f"### Throughput, concurrent clients each keeping one request in flight ({duration:g} s"
        " per point)",
        "",
        "| model | backend | clients | actions/s | p50 ms | p99 ms | mean batch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, backend, r in throughput_rows:
        lines.append(
            f"| {model} | {backend} | {r['clients']} | {r['actions_per_s']:.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_batch']:.2f} |"
        )
    lines += ["", "### Against the goals of issues 4 and 18 (this run)", ""]
    for model, backend, direct, latency, _, _, _ in split:
        if model == "default":
            add50, add99 = added_over_bare(latency, direct)
            met = "met" if add50 <= 0.3 and add99 <= 0.6 else "not met"
            lines.append(
                f"- default model, {backend}, batch 1: the request path adds {add50:.2f} ms p50 "
                f"and {add99:.2f} ms p99 to the bare predict; goal <= 0.3 / 0.6 ms: {met}."
            )
    for model, backend, _, latency, _ in rows:
        if model == "paper":
            ratio = latency.p50_ms / reference.p50_ms
            verdict = "met" if ratio <= 1 / 3 else "not met"
            lines.append(
                f"- paper config, {backend}: end-to-end p50 {latency.p50_ms:.2f} ms = "
                f"{ratio:.2f} x the eager forward ({reference.p50_ms:.2f} ms); goal <= 1/3: "
                f"{verdict}."
            )
        if model == "default":
            verdict = "met" if latency.p99_ms <= 2.0 else "not met"
            lines.append(
                f"- default model, {backend}: end-to-end p99 {latency.p99_ms:.2f} ms; "
                f"goal <= 2 ms: {verdict}."
            )
    lines += [
        "",
        "Reading these numbers:",
        "",
        "- The forward is compute-bound on one core: at the paper size about 260 MFLOP per "
        "request, so batching adds little throughput on a CPU; int8 weights cut the bytes "
        "and time about 3x at the cost of exactness.",
        "- `direct` runs back to back with hot caches; inside the node the forward follows an "
        "idle gap and runs slower (the `inference` stage), the same effect as sleeping between "
        "direct calls. The `bare after 0.5 ms idle` column measures that effect in this "
        "process: it is the idle gap's (caches and the core cooled), not the node's code.",
        "- At batch 1 the node runs a lone request on its receive thread (no hand-off to the "
        "inference thread and back: the `hand-off` stage is bookkeeping only); requests that "
        "arrive together go to the batcher at once, so the 8- and 32-client rows still batch "
        "(mean batch). Profile it with `python bench/serve_profile.py --backend onnx "
        "--clients 1` (client cProfile, node py-spy).",
        "- p99 on this shared 2-core machine is dominated by the other jobs' scheduling: "
        "compare the `direct` p99, which has no network and no threads, and the load average.",
        "- A node is one Python process: its per-request work (decode, slot layout, encode, "
        "about 0.1-0.2 ms here) bounds one node to roughly 10^4 requests/s whatever the "
        "accelerator; scale past that with several nodes behind the broker.",
    ]
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"\nwrote {args.out}")
    else:
        write_section("serve-latency", text)
        print("\nwrote the serve-latency section of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
