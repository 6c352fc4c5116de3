"""Make CurveZMQ key pairs for the inference node and its clients.

Examples:
  mtm-keygen --out keys/node --name node          # the node's pair
  mtm-keygen --out keys/clients --name robot-1    # one pair per client
  mtm-serve --bind tcp://0.0.0.0:5555 \\
      --curve-secret-key keys/node/node.key_secret --curve-allowed-clients keys/clients

Each pair is NAME.key (public: copy freely) and NAME.key_secret (secret: mode 0600, keep it
on its machine). The node accepts exactly the clients whose NAME.key files sit in the
--curve-allowed-clients directory; a client needs its own .key_secret and the node's .key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from mtm_robot.cli import check_output_dir, run
from mtm_robot.serving.security import generate_keypair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the key files")
    parser.add_argument("--name", required=True, help="key name, e.g. node or robot-1")
    args = parser.parse_args(argv)
    check_output_dir(args.out, "--out")
    if (args.out / f"{args.name}.key_secret").exists():
        print(f"error: {args.out / args.name}.key_secret exists; not overwriting", file=sys.stderr)
        return 2
    public, secret = generate_keypair(args.out, args.name)
    print(f"public key: {public}\nsecret key: {secret} (keep private)")
    return 0


def entry() -> NoReturn:
    """The ``mtm-keygen`` command (``python launch/keygen.py`` from a checkout)."""
    run(main)
