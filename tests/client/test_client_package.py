"""The installable client (``client/``, import name ``mtm_robot_client``) stands alone.

It imports neither torch, MuJoCo nor ``mtm_robot``; every documented error code is an
exception class; its schema file is the one copy the node validates against; its mode table
is the node's. (``scripts/check_client_alone.sh`` installs it alone in a fresh venv.)
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest
import tomllib

import mtm_robot_client
from mtm_robot_client import errors, modes, protocol
from mtm_robot_client.client import Reply

ROOT = Path(__file__).parents[2]


def _documented_error_codes() -> list[str]:
    """The codes of docs/protocol.md section 7's table, in order."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    section = doc[doc.index("## 7. Errors") : doc.index("## 8.")]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


def test_importing_the_client_imports_no_torch_mujoco_or_mtm_robot():
    code = textwrap.dedent(
        """
        import sys
        import mtm_robot_client, mtm_robot_client.modes
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in
                       ("torch", "mujoco", "dm_control", "onnxruntime", "onnx", "mtm_robot",
                        "controllers", "sim", "calibration"))
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_its_source_names_no_heavy_module():
    """No import of torch, mujoco or mtm_robot anywhere in the package, even a lazy one."""
    pattern = re.compile(r"^\s*(from|import)\s+(torch|mujoco|dm_control|mtm_robot)\b", re.M)
    sources = sorted((ROOT / "client" / "mtm_robot_client").glob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        assert not pattern.search(path.read_text()), path


def test_every_documented_error_code_is_its_own_exception_class():
    documented = _documented_error_codes()
    assert len(documented) == 18 and "model_mismatch" in documented
    assert list(errors.ERROR_CODES) == documented  # same codes, same order as the doc
    classes = [errors.ERROR_CLASSES[code] for code in documented]
    assert len(set(classes)) == len(classes)  # one class per code
    for code, cls in zip(documented, classes):
        exc = errors.error_for(code, "why")
        assert type(exc) is cls and exc.code == code and exc.message == "why"
        assert isinstance(exc, mtm_robot_client.NodeError)
        assert isinstance(exc, mtm_robot_client.MTMRobotError)
        assert str(exc) == f"{code}: why"
        assert getattr(mtm_robot_client, cls.__name__) is cls  # exported at the top
    named = {
        "too_large": "TooLarge",
        "not_finite": "NotFinite",
        "out_of_range": "OutOfRange",
        "expired": "Expired",
        "forbidden": "Forbidden",
        "model_mismatch": "ModelMismatch",
    }
    for code, name in named.items():
        assert errors.ERROR_CLASSES[code].__name__ == name
    unknown = errors.error_for("from_a_newer_node", "x")
    assert type(unknown) is errors.NodeError and unknown.code == "from_a_newer_node"


def test_an_error_reply_raises_its_class_and_keeps_the_reply():
    for status, code, cls in (
        ("error", "bad_shape", errors.BadShape),
        ("error", "out_of_range", errors.OutOfRange),
        ("expired", "expired", errors.Expired),
    ):
        reply = Reply({"id": 1, "status": status, "error": {"code": code, "message": "m"}})
        with pytest.raises(cls, match=f"{code}: m") as info:
            reply.raise_for_status()
        assert info.value.reply is reply
    ok = Reply({"id": 1, "status": "ok"})
    assert ok.raise_for_status() is ok


def test_timeouts_and_codec_errors_are_their_own_exceptions():
    assert issubclass(errors.NodeTimeoutError, TimeoutError)
    assert not issubclass(errors.NodeTimeoutError, errors.NodeError)
    assert issubclass(errors.ProtocolError, ValueError)
    with pytest.raises(errors.ProtocolError) as info:
        protocol.encode({"id": 1, "type": "act", "deadline_ms": float("nan")})
    assert info.value.code == errors.NOT_FINITE


def test_the_main_package_shares_the_clients_errors_and_codec():
    from mtm_robot import errors as main_errors
    from mtm_robot.serving import client as old_client
    from mtm_robot.serving import protocol as old_protocol
    from mtm_robot.serving import server

    assert main_errors.MTMRobotError is errors.MTMRobotError  # launchers: client errors = bad input
    assert server.wire is protocol  # the node encodes and decodes with the client's codec
    assert old_protocol.decode is protocol.decode
    assert old_client.NodeClient is mtm_robot_client.NodeClient


def test_the_schema_is_one_file_shipped_by_the_client():
    shipped = resources.files("mtm_robot_client").joinpath(protocol.SCHEMA_FILE)
    assert Path(str(shipped)).resolve() == (ROOT / "client/mtm_robot_client/protocol.schema.json")
    copies = [
        p
        for p in ROOT.rglob("protocol.schema.json")
        if not {".venv", "build", ".git"} & set(p.relative_to(ROOT).parts)
        and "egg-info" not in str(p)
    ]
    assert copies == [ROOT / "client/mtm_robot_client/protocol.schema.json"]
    from mtm_robot.serving import server

    schema = protocol.load_schema()
    assert server.wire.load_schema() == schema  # the one the node's tests validate against
    assert schema["$defs"]["error_code"]["enum"] == list(errors.ERROR_CODES)
    assert schema["$defs"]["mode"]["enum"] == list(modes.MODES)


def test_the_mode_table_is_the_nodes():
    from mtm_robot.model.masks import MODE_MASKS

    assert set(modes.MODES) == set(MODE_MASKS)  # every mode has its masks on the node
    assert modes.RETURN_MODES == ("return_conditioned", "two_stage")
    assert modes.MODES["forward_dynamics"].answer == "next_states"
    assert modes.get_mode("goal").allowed_arrays == (
        "state", "history_states", "history_actions", "goal_state",
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown mode 'bc'"):
        modes.get_mode("bc")


def test_the_distribution_depends_on_pyzmq_and_numpy_only():
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    assert client["project"]["name"] == "mtm-robot-client"
    deps = {re.split(r"[<>=!~ ;]", d)[0].lower() for d in client["project"]["dependencies"]}
    assert deps == {"numpy", "pyzmq"}
    assert client["project"]["requires-python"] == ">=3.10"
    package_data = client["tool"]["setuptools"]["package-data"]["mtm_robot_client"]
    assert "protocol.schema.json" in package_data
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert main["package-dir"] == {"mtm_robot_client": "client/mtm_robot_client"}
    assert "mtm_robot_client" in main["packages"]
    assert "protocol.schema.json" in main["package-data"]["mtm_robot_client"]
