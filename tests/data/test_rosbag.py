"""ROS 2 bags in and out: bags written with rosbags itself (sqlite3 and MCAP storage)."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from controllers.io_map import ActionChannel, IOMap, RawField, StateBlock
from mtm_robot.cli.interop import main
from mtm_robot.data.episodes import Episode, load_episodes
from mtm_robot.data.rosbag import export_mcap, import_bag, resample
from mtm_robot.errors import DataError

TS = get_typestore(Stores.ROS2_HUMBLE)
JOINTS = ["hip", "knee", "ankle"]
T0 = 1_000_000_000_000  # 1000 s in ns
STORAGES = [StoragePlugin.SQLITE3, StoragePlugin.MCAP]


def _joint_position(t: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(t), np.cos(2 * t), 0.1 * t], axis=-1)


def _command(t: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(3 * t), -np.cos(t), np.tanh(t)], axis=-1)


def _write_bag(path, storage, spans_s=((0.0, 2.0),), with_command=True, shuffle_names=False):
    """JointState at 100 Hz (header stamps lag receive time by 3 ms), IMU at 200 Hz, a
    Float64MultiArray command at 50 Hz (no header: receive time); over each span."""
    Header = TS.types["std_msgs/msg/Header"]
    Time = TS.types["builtin_interfaces/msg/Time"]
    JointState = TS.types["sensor_msgs/msg/JointState"]
    Imu = TS.types["sensor_msgs/msg/Imu"]
    Vector3 = TS.types["geometry_msgs/msg/Vector3"]
    Quaternion = TS.types["geometry_msgs/msg/Quaternion"]
    Multi = TS.types["std_msgs/msg/Float64MultiArray"]
    Layout = TS.types["std_msgs/msg/MultiArrayLayout"]

    def header(ns):
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="base")

    names = [JOINTS[i] for i in (2, 0, 1)] if shuffle_names else JOINTS
    order = [JOINTS.index(n) for n in names]
    writer = Writer(path, version=9, storage_plugin=storage)
    writer.open()
    js = writer.add_connection("/robot/joint_states", JointState.__msgtype__, typestore=TS)
    imu = writer.add_connection("/imu", Imu.__msgtype__, typestore=TS)
    cmd = writer.add_connection("/cmd", Multi.__msgtype__, typestore=TS) if with_command else None
    cov = np.zeros(9)
    for a, b in spans_s:
        for k in range(round((b - a) * 100) + 1):
            t = a + k / 100
            ns = T0 + round(t * 1e9)
            pos = _joint_position(np.array(t))[order]
            msg = JointState(
                header=header(ns), name=names, position=pos, velocity=10 * pos, effort=np.zeros(0)
            )
            writer.write(js, ns + 3_000_000, TS.serialize_cdr(msg, JointState.__msgtype__))
        for k in range(round((b - a) * 200) + 1):
            t = a + k / 200
            ns = T0 + round(t * 1e9)
            msg = Imu(
                header=header(ns),
                orientation=Quaternion(x=0, y=0, z=0, w=1),
                orientation_covariance=cov,
                angular_velocity=Vector3(x=t, y=2 * t, z=0),
                angular_velocity_covariance=cov,
                linear_acceleration=Vector3(x=0, y=0, z=9.81),
                linear_acceleration_covariance=cov,
            )
            writer.write(imu, ns, TS.serialize_cdr(msg, Imu.__msgtype__))
        if cmd is not None:
            for k in range(round((b - a) * 50) + 1):
                t = a + k / 50
                ns = T0 + round(t * 1e9)
                msg = Multi(layout=Layout(dim=[], data_offset=0), data=_command(np.array(t)))
                writer.write(cmd, ns, TS.serialize_cdr(msg, Multi.__msgtype__))
    writer.close()
    return path


def _io_map() -> IOMap:
    """Model state: joints [knee, hip] positions (hip sign flipped, knee scaled), all three
    joint velocities, IMU angular velocity x/y; actions drive the first two command slots."""
    return IOMap(
        task="robot-demo",
        raw_observation=[
            RawField("joint_states.position", 3),
            RawField("joint_states.velocity", 3),
            RawField("imu.angular_velocity", 3),
        ],
        actuators=["m0", "m1", "m2"],
        state=[
            StateBlock("joint_states.position", indices=[1, 0], scale=[2.0, -1.0]),
            StateBlock("joint_states.velocity"),
            StateBlock("imu.angular_velocity", indices=[0, 1], offset=0.5),
        ],
        action=[ActionChannel("m0", scale=2.0, offset=0.1), ActionChannel("m1", scale=-1.0)],
    )


def _expected_state(t: np.ndarray) -> np.ndarray:
    pos = _joint_position(t)
    return np.concatenate(
        [pos[:, [1, 0]] * [2.0, -1.0], 10 * pos, np.stack([t, 2 * t], 1) + 0.5], axis=1
    )


@pytest.mark.parametrize("storage", STORAGES, ids=["sqlite3", "mcap"])
def test_bag_is_imported_through_the_io_map_with_actions(tmp_path, storage):
    bag = _write_bag(tmp_path / "bag", storage)
    (episode,) = import_bag(
        bag,
        ["/robot/joint_states=joint_states", "/imu"],
        control_hz=20,
        io_map=_io_map(),
        action_topic="/cmd",
    )
    t = np.arange(41) / 20  # 0..2 s at 20 Hz: every grid point on a joint and an IMU message
    assert len(episode) == 41
    np.testing.assert_allclose(episode.time_s, t, atol=1e-9)
    np.testing.assert_allclose(episode.states, _expected_state(t), atol=1e-5)
    command = _command(np.floor(t * 50 + 1e-9) / 50)  # 50 Hz commands, held (zero-order)
    expected_actions = np.stack([(command[:, 0] - 0.1) / 2.0, -command[:, 1]], axis=1)
    assert episode.actions is not None
    np.testing.assert_allclose(episode.actions, expected_actions, atol=1e-5)
    assert episode.rewards is None
    assert episode.meta["task"] == "robot-demo"
    assert episode.meta["control_hz"] == 20
    assert episode.meta["state_names"][:2] == [
        "joint_states.position[1]",
        "joint_states.position[0]",
    ]


@pytest.mark.parametrize("storage", STORAGES, ids=["sqlite3", "mcap"])
def test_zoh_holds_and_linear_interpolates_between_messages(tmp_path, storage):
    bag = _write_bag(tmp_path / "bag", storage, with_command=False)
    kw = dict(control_hz=40, io_map=_io_map())  # 40 Hz: every other grid point between messages
    (zoh,) = import_bag(bag, ["/robot/joint_states=joint_states", "/imu"], method="zoh", **kw)
    (lin,) = import_bag(bag, ["/robot/joint_states=joint_states", "/imu"], method="linear", **kw)
    assert zoh.actions is None  # action-free: absent, not zeros
    t = np.arange(81) / 40
    held = np.floor(t * 100 + 1e-9) / 100  # the last 100 Hz joint message at or before t
    np.testing.assert_allclose(zoh.states[:, :5], _expected_state(held)[:, :5], atol=1e-5)
    mid = 1  # t = 0.025: halfway between joint messages at 0.02 and 0.03
    between = (_expected_state(np.array([0.02])) + _expected_state(np.array([0.03]))) / 2
    np.testing.assert_allclose(lin.states[mid, :5], between[0, :5], atol=1e-5)
    assert not np.allclose(lin.states[mid, :5], zoh.states[mid, :5])


def test_header_and_receive_clocks_differ_by_the_recorded_lag(tmp_path):
    bag = _write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, with_command=False)
    topics = ["/robot/joint_states=joint_states"]
    (header,) = import_bag(bag, topics, control_hz=100, clock="header")
    (receive,) = import_bag(bag, topics, control_hz=100, clock="receive")
    assert header.meta["start_time_ns"] == T0
    assert receive.meta["start_time_ns"] == T0 + 3_000_000
    np.testing.assert_array_equal(header.states, receive.states)  # same messages, shifted


def test_joint_order_reorders_by_name(tmp_path):
    bag = _write_bag(
        tmp_path / "bag", StoragePlugin.SQLITE3, with_command=False, shuffle_names=True
    )
    (episode,) = import_bag(
        bag, ["/robot/joint_states=joint_states"], control_hz=10, joint_order=JOINTS
    )
    t = np.arange(21) / 10
    np.testing.assert_allclose(episode.states[:, :3], _joint_position(t), atol=1e-6)


def test_a_pause_longer_than_split_gap_starts_a_new_episode(tmp_path):
    bag = _write_bag(tmp_path / "bag", StoragePlugin.MCAP, spans_s=((0, 1), (3, 4.5)))
    kw = dict(control_hz=10, io_map=_io_map(), action_topic="/cmd")
    topics = ["/robot/joint_states=joint_states", "/imu"]
    first, second = import_bag(bag, topics, split_gap_s=0.5, **kw)
    assert (len(first), len(second)) == (11, 16)
    np.testing.assert_allclose(second.states, _expected_state(3 + np.arange(16) / 10), atol=1e-5)
    (whole,) = import_bag(bag, topics, **kw)  # one bag, one episode: the pause is held
    assert len(whole) == 46


def test_bad_inputs_say_what_is_wrong(tmp_path):
    bag = _write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, with_command=False)
    with pytest.raises(DataError, match=r"topics \['/nope'\] not in the bag"):
        import_bag(bag, ["/nope"], control_hz=10)
    with pytest.raises(DataError, match="I/O map fields"):
        import_bag(bag, ["/robot/joint_states"], control_hz=10, io_map=_io_map())
    with pytest.raises(DataError, match="not a readable rosbag2"):
        import_bag(tmp_path / "missing", ["/x"], control_hz=10)


def test_zoh_resample_refuses_to_read_before_the_first_message():
    with pytest.raises(DataError):
        resample(np.array([10, 20]), np.ones((2, 1)), np.array([5]), "zoh")


def test_export_to_mcap_and_back_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            rng.normal(size=(n, 4)),
            rng.uniform(-1, 1, size=(n, 2)),
            rng.normal(size=n),
            meta={"control_hz": 40.0, "task": "walker-walk"},
        )
        for n in (30, 17)
    ]
    out = export_mcap(episodes, tmp_path / "export")
    assert list(out.glob("*.mcap")) and (out / "metadata.yaml").is_file()  # ros2 bag play reads it
    back = import_bag(
        out, ["/mtm/state"], control_hz=40, action_topic="/mtm/action", split_gap_s=0.5
    )
    assert [len(e) for e in back] == [30, 17]
    for a, b in zip(episodes, back):
        np.testing.assert_array_equal(a.states, b.states)
        assert b.actions is not None
        np.testing.assert_array_equal(a.actions, b.actions)


@pytest.mark.slow
def test_cli_imports_a_bag_and_a_tiny_model_trains_on_it(tmp_path):
    from controllers.io_map import save_io_map
    from mtm_robot.model.masks import MaskConfig
    from mtm_robot.model.mtm import ModelConfig
    from mtm_robot.training.train import TrainConfig, Trainer

    save_io_map(_io_map(), tmp_path / "map.yaml")
    for i, (storage, command) in enumerate(
        [(StoragePlugin.SQLITE3, True), (StoragePlugin.MCAP, False)]
    ):
        bag = _write_bag(tmp_path / f"bag{i}", storage, with_command=command)
        argv = [
            "rosbag-import",
            str(bag),
            "--topics",
            "/robot/joint_states=joint_states",
            "/imu",
            "--io-map",
            str(tmp_path / "map.yaml"),
            "--control-hz",
            "20",
            "--out",
            str(tmp_path / f"store{i}"),
        ]
        assert main([*argv, "--action-topic", "/cmd"] if command else argv) == 0
    labelled, free = load_episodes(tmp_path / "store0"), load_episodes(tmp_path / "store1")
    assert labelled[0].actions is not None and free[0].actions is None
    cfg = TrainConfig(
        model=ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0),
        masks=MaskConfig(patterns={"random_autoregressive": 1.0, "inverse_dynamics": 1.0}),
        steps=3,
        batch_size=8,
        eval_every=3,
        checkpoint_every=3,
    )
    cfg.data.modalities = ["states", "actions"]
    cfg.data.validation_fraction = 0.0
    trainer = Trainer(cfg, labelled * 4 + free * 4, tmp_path / "run")
    assert trainer.spec.modalities == {"states": 7, "actions": 2}
    trainer.run(progress=False)
    assert trainer.step == 3
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()
