"""Call a running inference node in every mode with nothing but mtm-robot-client.

    python launch/serve.py --checkpoint default                      # the node (mtm-robot)
    python client/examples/every_mode.py --endpoint tcp://127.0.0.1:5555   # numpy + pyzmq only

Reads the model's spec from ``metadata``, sends an ``act`` request in every mode it serves
(inputs built from the spec), checks every reply (shapes, finite, actions within the task's
bounds once clipped as a robot must, and not absurd before), then sends malformed requests
and checks that each raises the exception of its documented error code. Exit status 0 when
every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import mtm_robot_client as mc
from mtm_robot_client.modes import MODES, Mode

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def inputs(mode: Mode, meta: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The request fields of ``mode``: a state near the training data, two rows of history,
    and what the mode needs (a return target, future states, a goal, planned actions)."""
    ds, da = meta["modalities"]["states"], meta["modalities"]["actions"]
    std = np.asarray(meta.get("state_std") or np.ones(ds), np.float32)
    k = min(2, meta["max_history"] - (1 if mode.needs_future_slot else 0))
    fields: dict[str, Any] = {
        "history_states": (0.1 * std * rng.standard_normal((k, ds))).astype(np.float32),
        "history_actions": rng.uniform(-0.5, 0.5, (k, da)).astype(np.float32),
    }
    if mode.needs_return_target:
        if "normalized" in meta["return_target"]["units"]:
            fields.update(return_target=0.9, return_target_units="normalized")
        else:
            fields["return_target"] = 0.0  # model units, no known range
    if "future_states" in mode.arrays:
        fields["future_states"] = (0.1 * std * rng.standard_normal((1, ds))).astype(np.float32)
    if "goal_state" in mode.arrays:
        fields["goal_state"] = (0.1 * std * rng.standard_normal(ds)).astype(np.float32)
    if "planned_actions" in mode.arrays:
        fields["planned_actions"] = rng.uniform(-0.5, 0.5, (2, da)).astype(np.float32)
    return fields


def act_in_every_mode(
    client: mc.NodeClient, meta: dict[str, Any], bounds: tuple[np.ndarray, np.ndarray] | None
) -> None:
    rng = np.random.default_rng(0)
    ds, da = meta["modalities"]["states"], meta["modalities"]["actions"]
    L = meta["segment_length"]
    for name in meta["modes"]:
        mode = MODES[name]
        state = (0.1 * np.asarray(meta.get("state_std") or np.ones(ds))).astype(np.float32)
        fields = inputs(mode, meta, rng)
        reply = client.act(name, state, **fields)
        k = reply.header["history"]
        shapes = (reply.action.shape, reply.action_chunk.shape, reply.next_states.shape)
        check(
            shapes == ((da,), (L - k, da), (L - k - 1, ds)),
            f"{name}: reply shapes {shapes} (history {k}, segment {L})",
        )
        finite = all(np.isfinite(a).all() for a in reply.arrays.values())
        check(finite and reply.model_id == meta["model_id"], f"{name}: finite, {reply.model_id}")
        answer = reply.arrays[mode.answer]
        if bounds is not None:
            low, high = bounds
            width = high - low
            action = reply.action
            sane = bool(np.all(action >= low - width) and np.all(action <= high + width))
            clipped = np.clip(reply.action, low, high)  # the node never clips: the robot does
            over = float(np.max(np.maximum(reply.action - high, low - reply.action)))
            check(
                sane and bool(np.all((clipped >= low) & (clipped <= high))),
                f"{name}: action within bounds once clipped (raw overshoot {max(over, 0):.3f})",
            )
        print(f"      {mode.answer}[:3] = {[round(float(x), 3) for x in answer.reshape(-1)[:3]]}")


def malformed_requests_raise_their_codes(client: mc.NodeClient, meta: dict[str, Any]) -> None:
    ds = meta["modalities"]["states"]
    state = np.zeros(ds, np.float32)
    bc = "behavior_cloning"
    cases: list[tuple[type[mc.NodeError], str, Callable[[], object]]] = [
        (mc.BadShape, "a state of the wrong size", lambda: client.act(bc, state[:-1])),
        (mc.NotFinite, "a NaN in the state", lambda: client.act(bc, state * np.nan)),
        (mc.OutOfRange, "a state in absurd units", lambda: client.act(bc, state + 1e30)),
        (mc.BadRequest, "an unknown mode", lambda: client.act("no_such_mode", state)),
        (
            mc.BadRequest,
            "a return target where none belongs",
            lambda: client.act(bc, state, return_target=0.5),
        ),
        (mc.Expired, "a deadline already passed", lambda: client.act(bc, state, deadline_ms=0)),
        (mc.TooLarge, "a 2 MiB state", lambda: client.act(bc, np.zeros(1 << 19, np.float32))),
        (mc.Forbidden, "a remote reload (off by default)", lambda: client.reload()),
    ]
    if "return_conditioned" in meta["modes"] and "normalized" in meta["return_target"]["units"]:
        cases.append(
            (
                mc.OutOfRange,
                "a return target far past the training range",
                lambda: client.act(
                    "return_conditioned",
                    state,
                    return_target=50.0,
                    return_target_units="normalized",
                ),
            )
        )
    for cls, what, call in cases:
        try:
            call()
            raised: BaseException | None = None
        except mc.NodeError as exc:
            raised = exc
        check(
            isinstance(raised, cls) and raised is not None and raised.code == cls.code,
            f"{what}: raises {cls.__name__} (got {type(raised).__name__}: {raised})",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--timeout-ms", type=float, default=10_000, help="per request")
    parser.add_argument("--ready-timeout-s", type=float, default=60, help="wait for warm-up")
    parser.add_argument(
        "--bounds",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="action bounds when metadata has none (e.g. -1 1 for walker-walk)",
    )
    args = parser.parse_args(argv)

    with mc.NodeClient(args.endpoint, timeout_ms=args.timeout_ms) as client:
        health = client.wait_ready(timeout_s=args.ready_timeout_s)
        check(health["ready"] is True, f"health: ready, model {health['model_id']}")
        meta = client.metadata()
        check(meta["protocol_version"] == mc.PROTOCOL_VERSION, "metadata: protocol version 1")
        check(set(meta["modes"]) <= set(MODES), f"metadata: modes {meta['modes']}")
        da = meta["modalities"]["actions"]
        if meta.get("action_bounds"):
            bounds = meta["action_bounds"]["low"], meta["action_bounds"]["high"]
        elif args.bounds:
            bounds = [args.bounds[0]] * da, [args.bounds[1]] * da
        else:
            bounds = None
            print("note  no action bounds (metadata has none, no --bounds): not checked")
        act_in_every_mode(
            client, meta, None if bounds is None else (np.array(bounds[0]), np.array(bounds[1]))
        )
        malformed_requests_raise_their_codes(client, meta)
        stats = client.stats()
        check(stats["counters"]["ok"] >= len(meta["modes"]), f"stats: {stats['counters']}")
        check(client.health()["ready"] is True, "the node still serves after every bad request")

    with mc.NodeClient("tcp://127.0.0.1:9", timeout_ms=200) as nobody:  # nobody listens there
        try:
            nobody.health()
            check(False, "no node: NodeTimeoutError")
        except mc.NodeTimeoutError as exc:
            check(True, f"no node: NodeTimeoutError ({exc})")

    print(f"{len(failures)} failure(s)" if failures else "every check passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
