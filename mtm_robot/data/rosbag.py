"""ROS 2 bags in and out, through the ``rosbags`` library (pure Python, no ROS install).

Import (:func:`import_bag`): chosen topics of a rosbag2 recording (sqlite3 or MCAP storage)
become episodes of the model's state (and, from a command topic, action) layout:

1. every message of a chosen topic is read into named **raw fields**
   ``<alias>.<member>`` (the alias is the topic's last path segment unless given:
   ``/joint_states`` -> ``joint_states.position``, ``joint_states.velocity``, ...; see
   :data:`MESSAGE_FIELDS` for each supported message type);
2. each topic is **resampled** onto one control-rate grid ``t_k = t_0 + k / control_hz``
   (integer nanoseconds) covering the span where every topic has data: ``"zoh"`` (default,
   zero-order hold: the latest message at or before ``t_k``, what a controller reading the
   topics at that instant would have seen) or ``"linear"`` (interpolation between the two
   messages around ``t_k``);
   the time of a message is its ``header.stamp`` (``clock="header"``, default; topics whose
   type has no header fall back to the bag's receive time) or the receive time
   (``clock="receive"``);
3. the **I/O map** (:class:`controllers.io_map.IOMap`) turns the raw fields into the model's
   state (``state = scale * raw + offset``); the command topic's vector, in the order of the
   map's ``actuators``, is inverted through the map's action channels
   (``action[i] = (command[actuator_i] - offset_i) / scale_i``);
4. **episode boundaries**: one bag is one episode, or, with ``split_gap_s``, a pause longer
   than that on any chosen topic ends an episode and the next starts after it.

Without a command topic the episodes are action-free (no ``actions`` array, never zeros).

Export (:func:`export_mcap`): episodes as a rosbag2 folder with MCAP storage (opens in
Foxglove, plays with ``ros2 bag play``): ``/mtm/state`` and ``/mtm/action`` as
``sensor_msgs/msg/JointState`` (names: the episode's state names or ``s0..``, actuator names
or ``a0..``; values in ``position``), ``/mtm/reward`` as ``std_msgs/msg/Float64``; each
message's header stamp equals its receive time; episodes follow each other with a gap of
``episode_gap_s`` so that :func:`import_bag` with ``split_gap_s`` below it splits them again.

Needs the ``ros`` extra (``pip install "mtm-robot[ros]"``); the command line is
``mtm-interop rosbag-import`` / ``rosbag-export`` (:mod:`mtm_robot.cli.interop`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controllers.io_map import IOMap
from mtm_robot.data.episodes import Episode
from mtm_robot.errors import DataError

log = logging.getLogger(__name__)

RESAMPLE_METHODS = ("zoh", "linear")
CLOCKS = ("header", "receive")
STATE_TOPIC = "/mtm/state"
ACTION_TOPIC = "/mtm/action"
REWARD_TOPIC = "/mtm/reward"


def _vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def _xyz(v: Any) -> np.ndarray:
    return _vec(v.x, v.y, v.z)


def _xyzw(q: Any) -> np.ndarray:
    return _vec(q.x, q.y, q.z, q.w)


#: Supported message types -> their raw fields (member name -> values of one message).
MESSAGE_FIELDS: dict[str, Callable[[Any], dict[str, np.ndarray]]] = {
    "sensor_msgs/msg/JointState": lambda m: {
        "position": np.asarray(m.position, np.float64),
        "velocity": np.asarray(m.velocity, np.float64),
        "effort": np.asarray(m.effort, np.float64),
    },
    "nav_msgs/msg/Odometry": lambda m: {
        "position": _xyz(m.pose.pose.position),
        "orientation": _xyzw(m.pose.pose.orientation),
        "linear_velocity": _xyz(m.twist.twist.linear),
        "angular_velocity": _xyz(m.twist.twist.angular),
    },
    "sensor_msgs/msg/Imu": lambda m: {
        "orientation": _xyzw(m.orientation),
        "angular_velocity": _xyz(m.angular_velocity),
        "linear_acceleration": _xyz(m.linear_acceleration),
    },
    "geometry_msgs/msg/Twist": lambda m: {"linear": _xyz(m.linear), "angular": _xyz(m.angular)},
    "geometry_msgs/msg/TwistStamped": lambda m: {
        "linear": _xyz(m.twist.linear),
        "angular": _xyz(m.twist.angular),
    },
    "std_msgs/msg/Float64MultiArray": lambda m: {"data": np.asarray(m.data, np.float64)},
    "std_msgs/msg/Float32MultiArray": lambda m: {"data": np.asarray(m.data, np.float64)},
    "std_msgs/msg/Float64": lambda m: {"data": _vec(m.data)},
}


@dataclass
class TopicSeries:
    """One topic's messages as arrays: ``stamps_ns`` (n,) and each raw member (n, size)."""

    topic: str
    msgtype: str
    stamps_ns: np.ndarray
    fields: dict[str, np.ndarray]
    names: list[str]  # JointState joint names (empty for other types)


def _alias(topic: str) -> str:
    return topic.rstrip("/").rsplit("/", 1)[-1] or topic


def parse_topics(specs: Sequence[str]) -> dict[str, str]:
    """``["/joint_states", "/robot/imu=imu"]`` -> ``{topic: alias}`` (alias: last segment)."""
    out: dict[str, str] = {}
    for spec in specs:
        topic, _, alias = spec.partition("=")
        out[topic] = alias or _alias(topic)
    if len(set(out.values())) != len(out):
        raise DataError(
            f"topics {list(out)} give repeated aliases {list(out.values())}: "
            "name them, e.g. /left/joint_states=left"
        )
    return out


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def read_topics(
    bag: str | Path, topics: Sequence[str], clock: str = "header"
) -> dict[str, TopicSeries]:
    """Every message of ``topics`` in a rosbag2 folder (sqlite3 or MCAP), as arrays."""
    from rosbags.rosbag2 import Reader

    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    bag = Path(bag)
    typestore = _typestore()
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own ReaderError and OSErrors
        raise DataError(f"{bag}: not a readable rosbag2 folder ({exc})") from exc
    try:
        available = {c.topic: c.msgtype for c in reader.connections}
        missing = [t for t in topics if t not in available]
        if missing:
            raise DataError(f"{bag}: topics {missing} not in the bag; it has {available}")
        for t in topics:
            if available[t] not in MESSAGE_FIELDS:
                raise DataError(
                    f"{bag}: topic {t} is {available[t]}; supported types: "
                    f"{', '.join(MESSAGE_FIELDS)}"
                )
        rows: dict[str, list[tuple[int, dict[str, np.ndarray], list[str]]]] = {
            t: [] for t in topics
        }
        wanted = [c for c in reader.connections if c.topic in rows]
        for connection, receive_ns, raw in reader.messages(connections=wanted):
            msg = typestore.deserialize_cdr(raw, connection.msgtype)
            stamp = receive_ns
            header = getattr(msg, "header", None)
            if clock == "header" and header is not None:
                stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
            names = list(getattr(msg, "name", []) or [])
            rows[connection.topic].append((stamp, MESSAGE_FIELDS[connection.msgtype](msg), names))
    finally:
        reader.close()
    out = {}
    for topic in topics:
        series = rows[topic]
        if not series:
            raise DataError(f"{bag}: topic {topic} has no messages")
        series.sort(key=lambda r: r[0])
        names = series[0][2]
        for stamp, _, n in series:
            if n != names:
                raise DataError(
                    f"{bag}: {topic} changes its joint names at t={stamp} ns: "
                    f"{names} -> {n}; record a fixed joint order"
                )
        fields = {}
        for member in series[0][1]:
            sizes = {len(r[1][member]) for r in series}
            if len(sizes) != 1:
                raise DataError(f"{bag}: {topic} {member} changes size {sorted(sizes)}")
            if sizes != {0}:
                fields[member] = np.stack([r[1][member] for r in series])
        out[topic] = TopicSeries(
            topic, available[topic], np.array([r[0] for r in series], np.int64), fields, names
        )
    return out


def _segments(series: Sequence[TopicSeries], split_gap_s: float | None) -> list[tuple[int, int]]:
    """Time spans ``[start, end]`` (ns) where every topic has data and no pause > split_gap_s."""
    start = max(int(s.stamps_ns[0]) for s in series)
    end = min(int(s.stamps_ns[-1]) for s in series)
    if end < start:
        raise DataError(
            "the chosen topics do not overlap in time: "
            + ", ".join(f"{s.topic} [{s.stamps_ns[0]}, {s.stamps_ns[-1]}] ns" for s in series)
        )
    gaps: list[tuple[int, int]] = []
    if split_gap_s is not None:
        limit = int(split_gap_s * 1e9)
        for s in series:
            for i in np.flatnonzero(np.diff(s.stamps_ns) > limit):
                gaps.append((int(s.stamps_ns[i]), int(s.stamps_ns[i + 1])))
    spans = [(start, end)]
    for g0, g1 in sorted(gaps):
        nxt = []
        for a, b in spans:
            if g1 <= a or g0 >= b:
                nxt.append((a, b))
                continue
            if g0 > a:
                nxt.append((a, g0))
            if g1 < b:
                nxt.append((g1, b))
        spans = nxt
    # each span starts where every topic has a message at or before it
    result = []
    for a, b in spans:
        firsts = []
        for s in series:
            inside = s.stamps_ns[(s.stamps_ns >= a) & (s.stamps_ns <= b)]
            firsts.append(int(inside[0]) if len(inside) else b + 1)
        a = max(firsts)
        if a <= b:
            result.append((a, b))
    return result


def resample(
    stamps_ns: np.ndarray, values: np.ndarray, grid_ns: np.ndarray, method: str
) -> np.ndarray:
    """``values`` (n, d) at ``stamps_ns`` read at ``grid_ns``: zero-order hold or linear."""
    if method == "zoh":
        idx = np.searchsorted(stamps_ns, grid_ns, side="right") - 1
        if (idx < 0).any():
            raise DataError("resampling before a topic's first message")
        return values[idx]
    if method == "linear":
        t = (stamps_ns - stamps_ns[0]).astype(np.float64)
        g = (grid_ns - stamps_ns[0]).astype(np.float64)
        return np.stack([np.interp(g, t, values[:, j]) for j in range(values.shape[1])], axis=1)
    raise ValueError(f"resample method must be one of {RESAMPLE_METHODS}, got {method!r}")


def _raw_fields(
    series: TopicSeries,
    alias: str,
    grid_ns: np.ndarray,
    method: str,
    joint_order: Sequence[str] | None,
) -> dict[str, np.ndarray]:
    order = None
    if joint_order and series.names:
        unknown = [j for j in joint_order if j not in series.names]
        if unknown:
            raise DataError(f"{series.topic}: joints {unknown} not in its names {series.names}")
        order = [series.names.index(j) for j in joint_order]
    out = {}
    for member, values in series.fields.items():
        if order is not None and values.shape[1] == len(series.names):
            values = values[:, order]
        out[f"{alias}.{member}"] = resample(series.stamps_ns, values, grid_ns, method)
    return out


def _command_vector(
    series: TopicSeries,
    member: str | None,
    actuators: Sequence[str],
    grid_ns: np.ndarray,
    method: str,
) -> np.ndarray:
    """The command topic's ``member`` in the order of the I/O map's actuators, (T, n_act)."""
    if member is None:  # JointState: its positions; one-member types: that member
        member = "position" if "position" in series.fields else next(iter(series.fields), "")
        member = member if "position" in series.fields or len(series.fields) == 1 else ""
    if member not in series.fields:
        raise DataError(
            f"command topic {series.topic} has no non-empty '{member}' (has {list(series.fields)})"
        )
    values = series.fields[member]
    if series.names:
        missing = [a for a in actuators if a not in series.names]
        if missing:
            raise DataError(
                f"command topic {series.topic}: actuators {missing} of the I/O map "
                f"are not among its joint names {series.names}"
            )
        values = values[:, [series.names.index(a) for a in actuators]]
    elif values.shape[1] != len(actuators):
        raise DataError(
            f"command topic {series.topic} has {values.shape[1]} values, the I/O "
            f"map has {len(actuators)} actuators {list(actuators)}"
        )
    return resample(series.stamps_ns, values, grid_ns, method)


def _command_names(series: TopicSeries) -> list[str]:
    """A command topic's actuators: its joint names, else ``a0..`` by position."""
    return series.names or [f"a{i}" for i in range(next(iter(series.fields.values())).shape[1])]


def default_io_map(
    fields: Mapping[str, int], actuators: Sequence[str] = (), task: str = ""
) -> IOMap:
    """The identity map over raw fields in the given order (and ``actuators``): for bags whose
    topics already carry the model's layout (our own export)."""
    from controllers.io_map import ActionChannel, RawField, StateBlock

    return IOMap(
        task=task,
        raw_observation=[RawField(n, s) for n, s in fields.items()],
        actuators=list(actuators),
        state=[StateBlock(n) for n in fields],
        action=[ActionChannel(a) for a in actuators],
    )


def import_bag(
    bag: str | Path,
    state_topics: Sequence[str],
    control_hz: float,
    io_map: IOMap | None = None,
    action_topic: str | None = None,
    action_field: str | None = None,
    method: str = "zoh",
    clock: str = "header",
    split_gap_s: float | None = None,
    joint_order: Sequence[str] | None = None,
    task: str = "",
) -> list[Episode]:
    """Episodes from a rosbag2 folder; see the module docstring for every step.

    ``state_topics`` are topic names, each optionally ``topic=alias``; ``io_map`` maps the raw
    fields ``<alias>.<member>`` to the model's state (default: every non-empty field in topic
    order, identity). ``joint_order`` reorders JointState arrays by joint name.
    """
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"resample method must be one of {RESAMPLE_METHODS}, got {method!r}")
    if not control_hz > 0:
        raise ValueError(f"control_hz must be > 0, got {control_hz}")
    bag = Path(bag)
    aliases = parse_topics(state_topics)
    names = list(aliases) + ([action_topic] if action_topic else [])
    series = read_topics(bag, names, clock)
    period_ns = 1e9 / control_hz
    episodes = []
    for a, b in _segments(list(series.values()), split_gap_s):
        grid = a + np.round(np.arange(int((b - a) / period_ns + 1e-6) + 1) * period_ns).astype(
            np.int64
        )
        fields: dict[str, np.ndarray] = {}
        for topic, alias in aliases.items():
            fields.update(_raw_fields(series[topic], alias, grid, method, joint_order))
        the_map = io_map or default_io_map(
            {n: v.shape[1] for n, v in fields.items()},
            _command_names(series[action_topic]) if action_topic else [],
            task,
        )
        sizes = the_map.field_sizes
        unknown = [n for n in sizes if n not in fields]
        if unknown:
            raise DataError(
                f"I/O map fields {unknown} are not in the bag's topics; the "
                f"chosen topics give {sorted(fields)}"
            )
        states = np.stack(
            [the_map.state_from_fields({n: fields[n][k] for n in sizes}) for k in range(len(grid))]
        )
        actions = None
        if action_topic:
            command = _command_vector(
                series[action_topic], action_field, the_map.actuators, grid, method
            )
            slots, scale, offset = the_map._channel_arrays()
            actions = (command[:, slots] - offset) / scale
        meta = {
            "task": task or the_map.task,
            "source": f"rosbag:{bag.name}",
            "control_hz": float(control_hz),
            "state_topics": list(aliases),
            "action_topic": action_topic,
            "resample": method,
            "clock": clock,
            "start_time_ns": int(grid[0]),
            "state_names": the_map.state_names(),
            "terminated": False,
            "truncated": True,
        }
        episodes.append(Episode(states, actions, time_s=(grid - grid[0]) / 1e9, meta=meta))
        log.info("%s: episode of %d steps from %.3f s", bag, len(grid), grid[0] / 1e9)
    if not episodes:
        raise DataError(f"{bag}: no span of the chosen topics is long enough for one step")
    return episodes


def _stamp(ns: int, typestore: Any) -> Any:
    Time = typestore.types["builtin_interfaces/msg/Time"]
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def export_mcap(
    episodes: Sequence[Episode],
    out: str | Path,
    episode_gap_s: float = 1.0,
    start_ns: int = 1_700_000_000 * 1_000_000_000,
) -> Path:
    """Write ``episodes`` as a rosbag2 folder with MCAP storage (see the module docstring)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if not episodes:
        raise DataError("no episodes to export")
    out = Path(out)
    if out.exists():
        raise DataError(f"{out} exists; rosbag2 writes a new folder, choose another --out")
    typestore = _typestore()
    JointState = typestore.types["sensor_msgs/msg/JointState"]
    Header = typestore.types["std_msgs/msg/Header"]
    Float64 = typestore.types["std_msgs/msg/Float64"]
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        state_c = writer.add_connection(STATE_TOPIC, JointState.__msgtype__, typestore=typestore)
        action_c = reward_c = None
        if any(e.actions is not None for e in episodes):
            action_c = writer.add_connection(
                ACTION_TOPIC, JointState.__msgtype__, typestore=typestore
            )
        if any(e.rewards is not None for e in episodes):
            reward_c = writer.add_connection(REWARD_TOPIC, Float64.__msgtype__, typestore=typestore)
        t0 = start_ns
        empty = np.zeros(0, np.float64)
        for episode in episodes:
            hz = float(episode.meta.get("control_hz") or 0)
            if not hz > 0:
                raise DataError("episode meta has no control_hz: cannot time its messages")
            state_names = list(
                episode.meta.get("state_names") or [f"s{i}" for i in range(episode.states.shape[1])]
            )
            action_names = (
                [f"a{i}" for i in range(episode.actions.shape[1])]
                if episode.actions is not None
                else []
            )
            stamps = t0 + np.round(np.arange(len(episode)) * 1e9 / hz).astype(np.int64)
            for k, ns in enumerate(stamps.tolist()):
                header = Header(stamp=_stamp(ns, typestore), frame_id="")
                msg = JointState(
                    header=header,
                    name=state_names,
                    position=episode.states[k].astype(np.float64),
                    velocity=empty,
                    effort=empty,
                )
                writer.write(state_c, ns, typestore.serialize_cdr(msg, JointState.__msgtype__))
                if action_c is not None and episode.actions is not None:
                    msg = JointState(
                        header=header,
                        name=action_names,
                        position=episode.actions[k].astype(np.float64),
                        velocity=empty,
                        effort=empty,
                    )
                    writer.write(action_c, ns, typestore.serialize_cdr(msg, JointState.__msgtype__))
                if reward_c is not None and episode.rewards is not None:
                    msg = Float64(data=float(episode.rewards[k]))
                    writer.write(reward_c, ns, typestore.serialize_cdr(msg, Float64.__msgtype__))
            t0 = int(stamps[-1]) + int(episode_gap_s * 1e9)
    finally:
        writer.close()
    return out
