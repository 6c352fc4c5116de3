"""Serve an MTM checkpoint over ZeroMQ: the inference node (protocol in docs/protocol.md).

Examples:
  mtm-serve --checkpoint default
  mtm-serve --checkpoint runs/walker/checkpoints/best --backend onnx --max-batch 64
  mtm-serve --config serve_remote --bind tcp://0.0.0.0:5555 \\
      --curve-secret-key keys/node/node.key_secret --curve-allowed-clients keys/clients

Binds loopback by default. Any other address needs CurveZMQ keys (make them with
mtm-keygen) or --insecure. SIGINT/SIGTERM finish the queued requests and stop; SIGHUP
reloads the checkpoint from disk (hot swap, no request dropped). Remote "reload" requests
(finetune.py --push) are refused unless --allow-reload DIR names where they may load from.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import NoReturn

from mtm_robot.cli import run
from mtm_robot.config import load_config
from mtm_robot.serving.process import exit_with_parent
from mtm_robot.serving.server import InferenceNode, ServeConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file, or a shipped preset: serve, serve_gpu, serve_remote"
    )
    parser.add_argument("--checkpoint", help="checkpoint directory, or 'default' (walker-walk)")
    parser.add_argument("--bind", help="ZeroMQ endpoint, default tcp://127.0.0.1:5555")
    parser.add_argument("--backend", choices=("torch", "onnx"), help="inference backend")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where the model runs")
    parser.add_argument("--onnx", help="exported graph for --backend onnx (else exported now)")
    parser.add_argument(
        "--quantize", choices=("none", "int8"), help="onnx: int8 weights (faster, approximate)"
    )
    parser.add_argument("--max-batch", type=int, help="largest batch per forward")
    parser.add_argument(
        "--max-wait-us", type=int, help="how long a batch waits for more requests (0: greedy)"
    )
    parser.add_argument("--threads", type=int, help="CPU threads for the forward")
    parser.add_argument("--curve-secret-key", help="node's .key_secret file (enables CurveZMQ)")
    parser.add_argument(
        "--curve-allowed-clients", help="directory of allowed client public keys (*.key)"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback bind without CurveZMQ (anyone reaching it can query)",
    )
    parser.add_argument(
        "--allow-reload",
        metavar="DIR",
        help="answer remote reload requests for checkpoints under DIR (default: refuse them)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        help="exit when process PID ends (set by whoever starts the node as its child)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config value, e.g. --set max_queue=1024 --set backend.threads=2",
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> ServeConfig:
    flags = {
        "checkpoint": args.checkpoint,
        "bind": args.bind,
        "backend.backend": args.backend,
        "backend.device": args.device,
        "backend.onnx_path": args.onnx,
        "backend.quantize": args.quantize,
        "backend.max_batch": args.max_batch,
        "backend.threads": args.threads,
        "max_wait_us": args.max_wait_us,
        "curve_secret_key": args.curve_secret_key,
        "curve_allowed_clients": args.curve_allowed_clients,
        "insecure": True if args.insecure else None,
        "allow_reload": args.allow_reload,
    }
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None]
    return load_config(ServeConfig, args.config, overrides + list(args.set))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.parent_pid:  # the parent gone: SIGTERM to ourselves, the graceful stop below
        exit_with_parent(args.parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM))
    config = build_config(args)
    node = InferenceNode(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        print(f"{signal.Signals(signum).name}: finishing queued requests, then stopping")
        node.request_stop()

    def reload(signum: int, frame: FrameType | None) -> None:
        print("SIGHUP: reloading the checkpoint")
        node.request_reload()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    endpoint = node.start()
    print(
        f"serving {node.model_id} on {endpoint} ({config.backend.backend}, "
        f"{config.backend.device}, max batch {config.backend.max_batch}); warming up"
    )
    node.serve_forever()
    print("stopped")
    return 0


def entry() -> NoReturn:
    """The ``mtm-serve`` command (``python launch/serve.py`` from a checkout)."""
    run(main)
