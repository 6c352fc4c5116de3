"""Run a ZeroMQ broker in front of several inference nodes (requests are stateless).

Examples:
  mtm-serve --checkpoint default --bind tcp://127.0.0.1:5561 &
  mtm-serve --checkpoint default --bind tcp://127.0.0.1:5562 &
  mtm-broker --bind tcp://127.0.0.1:5555 \\
      --node tcp://127.0.0.1:5561 --node tcp://127.0.0.1:5562

Clients connect to --bind exactly as to a node; requests go round-robin to the nodes. Binding
anything but loopback needs CurveZMQ keys (--curve-secret-key, --curve-allowed-clients, as for
mtm-serve) or --insecure. For nodes that run CurveZMQ, give the broker its own client
key pair (--node-curve-secret-key, allowed on the nodes) and the nodes' public key.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import NoReturn

from mtm_robot.cli import run
from mtm_robot.serving.broker import Broker
from mtm_robot.serving.security import CurveServer
from mtm_robot_client import CurveClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="frontend for clients")
    parser.add_argument("--node", action="append", required=True, help="node endpoint; repeat")
    parser.add_argument("--curve-secret-key", help="broker frontend .key_secret (CurveZMQ)")
    parser.add_argument("--curve-allowed-clients", help="directory of allowed client *.key")
    parser.add_argument("--node-curve-secret-key", help="broker's client .key_secret for nodes")
    parser.add_argument("--node-public-key", help="the nodes' public .key file")
    parser.add_argument("--insecure", action="store_true", help="non-loopback without CurveZMQ")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if bool(args.curve_secret_key) != bool(args.curve_allowed_clients):
        parser.error("--curve-secret-key and --curve-allowed-clients go together")
    if bool(args.node_curve_secret_key) != bool(args.node_public_key):
        parser.error("--node-curve-secret-key and --node-public-key go together")
    curve = (
        CurveServer(args.curve_secret_key, args.curve_allowed_clients)
        if args.curve_secret_key
        else None
    )
    node_curve = (
        CurveClient(args.node_curve_secret_key, args.node_public_key)
        if args.node_curve_secret_key
        else None
    )
    broker = Broker(
        args.bind, args.node, insecure=args.insecure, curve=curve, node_curve=node_curve
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"broker on {broker.start()} -> {', '.join(args.node)}")
    while not stop.wait(0.5):
        pass
    broker.stop()
    print("stopped")
    return 0


def entry() -> NoReturn:
    """The ``mtm-broker`` command (``python launch/broker.py`` from a checkout)."""
    run(main)
