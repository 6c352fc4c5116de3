"""Serve an MTM checkpoint over ZeroMQ: the inference node (protocol in docs/protocol.md).

Examples:
  mtm-serve --checkpoint default
  mtm-serve --checkpoint runs/walker/checkpoints/best --backend onnx --max-batch 64
  mtm-serve --config serve_remote --bind tcp://0.0.0.0:5555 \\
      --curve-secret-key keys/node/node.key_secret --curve-allowed-clients keys/clients

Binds loopback by default. Any other address needs CurveZMQ keys (make them with
mtm-keygen) or --insecure. SIGINT/SIGTERM finish the queued requests and stop; SIGHUP
reloads the checkpoint from disk (hot swap, no request dropped). Remote "reload" requests
(mtm-finetune --push) are refused unless --allow-reload DIR names where they may load from.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from types import FrameType
from typing import Annotated, NoReturn

from mtm_robot.cli import run
from mtm_robot.cli.settings import SETTINGS, Overrides, parse_command
from mtm_robot.serving.config import ServeConfig
from mtm_robot.serving.process import exit_with_parent


@dataclass
class ServeCommand:
    """The arguments of ``mtm-serve``: its own options and the node's settings."""

    serve: Annotated[ServeConfig, SETTINGS] = field(default_factory=ServeConfig)
    config: str | None = None
    """YAML preset of the node settings: a file, or a shipped preset (serve, serve_gpu, ...)"""
    set: Overrides = field(default_factory=list)
    """override any setting, e.g. --set max_queue=1024 (the flags override these)"""
    parent_pid: int = 0
    """exit when process PID ends (set by whoever starts the node as its child)"""


#: The short names serve has always had.
ALIASES = {
    "--backend": ["--backend.backend"],
    "--device": ["--backend.device"],
    "--onnx": ["--backend.onnx-path"],
    "--quantize": ["--backend.quantize"],
    "--max-batch": ["--backend.max-batch"],
    "--threads": ["--backend.threads"],
}


def parse_args(argv: list[str] | None = None) -> ServeCommand:
    return parse_command(
        ServeCommand, argv, prog="mtm-serve", description=__doc__, aliases=ALIASES
    )


def build_config(args: ServeCommand) -> ServeConfig:
    return args.serve


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.parent_pid:  # the parent gone: SIGTERM to ourselves, the graceful stop below
        exit_with_parent(args.parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM))
    config = build_config(args)
    from mtm_robot.serving.server import InferenceNode  # torch: after the arguments

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
