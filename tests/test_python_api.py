"""The Python API (``mtm_robot`` exports, ``mtm_robot.policy``) and ``docs/python-api.md``.

A tiny seeded MTM (random weights, recorded action bounds) checks the policy's mechanics
against the :class:`~mtm_robot.inference.Predictor` directly; the shipped walker-walk model
checks return-target units and the local/node agreement.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zmq

import mtm_robot
from mtm_robot.data.normalize import Normalizer
from mtm_robot.errors import ConfigError
from mtm_robot.inference import Context, Predictor
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
from mtm_robot.policy import connect_policy, load_policy
from mtm_robot.return_target import default_return_target
from mtm_robot.serving.backends import BackendConfig
from mtm_robot.serving.server import InferenceNode, ServeConfig
from mtm_robot.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mtm_robot_client import BadRequest, OutOfRange
from mtm_robot_client.modes import MODES, RETURN_MODES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"
SPEC = DataSpec({"states": 5, "actions": 2, "returns": 1}, segment_length=4)
DS, DA = SPEC.modalities["states"], SPEC.modalities["actions"]
BOUNDS = {"low": [-1.0, -1.0], "high": [1.0, 1.0]}


def tiny_checkpoint(directory: Path, **metadata: Any) -> Path:
    """A random width-32 one-layer MTM whose actions (mean 1, std 2) often leave [-1, 1]."""
    torch.manual_seed(3)
    model = MTM(
        SPEC, ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0)
    )
    with torch.no_grad():
        for p in (model.enc_modality, model.dec_modality, model.mask_token):
            p.normal_()
    rng = np.random.default_rng(3)
    data = {n: rng.normal(1.0, 2.0, size=(64, d)) for n, d in SPEC.modalities.items()}
    meta = {"model_id": directory.name, "return_stats": {"return_min": 0.0, "return_max": 2.0}}
    meta.update(metadata)
    save_checkpoint(directory, model.eval(), Normalizer.fit(data), meta)
    return directory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return load_checkpoint(
        tiny_checkpoint(tmp_path_factory.mktemp("api") / "tiny", action_bounds=BOUNDS)
    )


@pytest.fixture(scope="module")
def walker() -> Checkpoint:
    return load_checkpoint("default")


@pytest.fixture(scope="module")
def walker_states() -> np.ndarray:
    """Three consecutive walker-walk observations under zero actions."""
    from sim import registry

    env = registry.make("walker-walk")
    states = [env.reset(seed=0)[0]]
    for _ in range(2):
        states.append(env.step(np.zeros(6))[0])
    env.close()
    return np.stack(states).astype(np.float32)


def states(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 2.0, (n, DS)).astype(np.float32)


def mode_inputs(mode: str, dim_s: int, dim_a: int, seed: int = 1) -> dict[str, Any]:
    """What ``act`` needs for ``mode`` beyond the observation (and a return target)."""
    rng = np.random.default_rng(seed)
    return {
        "inverse_dynamics": {"future_states": rng.normal(0.5, 1.0, (1, dim_s))},
        "forward_dynamics": {"planned_actions": rng.uniform(-1, 1, (1, dim_a))},
        "goal": {"goal_state": rng.normal(0.5, 1.0, dim_s)},
    }.get(mode, {})


# -- the package's exports ----------------------------------------------------------------------
def test_import_mtm_robot_imports_no_torch_until_a_model_is_loaded():
    code = (
        "import sys, mtm_robot\n"
        "bare = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "mtm_robot.Policy, mtm_robot.connect_policy, mtm_robot.read_metadata, mtm_robot.MODES\n"
        "mtm_robot.read_metadata(mtm_robot.DEFAULT_CHECKPOINT)\n"
        "print(bare, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[] False"


def test_every_export_resolves_and_is_listed():
    exports = set(mtm_robot.__all__) - {"__version__"}
    assert exports == set(mtm_robot._EXPORTS)  # the lazy table and __all__ agree
    for name in mtm_robot.__all__:
        assert getattr(mtm_robot, name) is not None
        assert name in dir(mtm_robot)
    assert mtm_robot.load_policy is load_policy and mtm_robot.load_checkpoint is load_checkpoint
    assert mtm_robot.MODES is MODES
    with pytest.raises(AttributeError, match="no attribute 'load_polcy'"):
        mtm_robot.load_polcy  # noqa: B018
    from mtm_robot import atomic  # submodules import as before

    assert atomic.__name__ == "mtm_robot.atomic"


# -- clipping ----------------------------------------------------------------------------------
def test_actions_are_clipped_to_the_recorded_bounds_by_default(tiny):
    wild = np.full(DS, 25.0, np.float32)
    policy = load_policy(tiny, "behavior_cloning")
    raw = policy.act(wild, clip=False)
    assert np.abs(raw).max() > 1.2  # the model's own action leaves the bounds
    policy.reset()
    clipped = policy.act(wild)
    np.testing.assert_array_equal(clipped, np.clip(raw, -1.0, 1.0))
    raw_policy = load_policy(tiny, "behavior_cloning", clip=False)
    np.testing.assert_array_equal(raw_policy.act(wild), raw)
    walker_policy = load_policy("default")  # the shipped model records walker-walk's bounds
    assert walker_policy.action_low is not None and walker_policy.action_high is not None
    assert walker_policy.action_low.tolist() == [-1.0] * 6
    assert walker_policy.action_high.tolist() == [1.0] * 6


def test_a_policy_that_should_clip_needs_bounds(tmp_path):
    unbounded = load_checkpoint(tiny_checkpoint(tmp_path / "unbounded"))
    with pytest.raises(ConfigError, match=r"records no action_bounds.*clip=False"):
        load_policy(unbounded, "behavior_cloning")
    wild = np.full(DS, 25.0, np.float32)
    raw = load_policy(unbounded, "behavior_cloning", clip=False).act(wild)
    given = load_policy(unbounded, "behavior_cloning", action_bounds=([-0.5, -0.5], [0.5, 0.5]))
    np.testing.assert_array_equal(given.act(wild), np.clip(raw, -0.5, 0.5))


# -- return targets ----------------------------------------------------------------------------
def test_return_targets_are_episode_returns_by_default(walker, walker_states):
    state = walker_states[0]
    episode = load_policy(walker).act(state, return_target=900)  # walker: horizon 1000
    model_units = load_policy(walker, return_target=0.9, return_target_units="model")
    np.testing.assert_array_equal(episode, model_units.act(state))
    normalized = load_policy(walker, return_target_units="normalized", return_target=0.0)
    assert not np.allclose(normalized.act(state), episode, atol=1e-3)  # the target matters
    rule = default_return_target(walker.metadata)
    by_rule = load_policy(walker, return_target=rule, return_target_units="model")
    np.testing.assert_array_equal(load_policy(walker).act(state), by_rule.act(state))


def test_return_targets_are_checked_as_the_node_checks_them(tiny, walker, walker_states):
    with pytest.raises(OutOfRange, match="outside the accepted range"):
        load_policy(walker).act(walker_states[0], return_target=5000)
    with pytest.raises(BadRequest, match="episode_return' unavailable"):  # no return_horizon
        load_policy(tiny).act(states(1)[0], return_target=1.0)
    with pytest.raises(ValueError, match="takes no return_target"):
        load_policy(tiny, "behavior_cloning").act(states(1)[0], return_target=1.0)
    with pytest.raises(ConfigError, match="takes no return_target"):
        load_policy(tiny, "behavior_cloning", return_target=1.0)


# -- history -----------------------------------------------------------------------------------
def test_each_request_carries_the_last_steps_as_applied(tiny):
    """The third action is the Predictor's on a context with the first two steps."""
    s = states(3)
    policy = load_policy(tiny, "behavior_cloning")
    a0, a1, a2 = (policy.act(x) for x in s)
    predictor = Predictor.from_model(tiny.model, tiny.normalizer)
    context = Context("behavior_cloning", s[2], s[:2], np.stack([a0, a1]))
    np.testing.assert_allclose(a2, np.clip(predictor.predict(context).action, -1, 1), atol=1e-6)
    assert policy.step == 3


def test_reset_clears_the_history(tiny):
    s = states(2)
    policy = load_policy(tiny, "behavior_cloning")
    first = policy.act(s[0])
    policy.act(s[1])
    with_history = policy.act(s[0])
    assert not np.allclose(with_history, first, atol=1e-4)  # the history changes the answer
    policy.reset()
    assert policy.step == 0
    np.testing.assert_array_equal(policy.act(s[0]), first)
    stateless = load_policy(tiny, "behavior_cloning", history=0)
    np.testing.assert_array_equal(stateless.act(s[1]), stateless.act(s[1]))


# -- every mode --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_answers_what_the_predictor_answers(tiny, mode):
    options: dict[str, Any] = {}
    if mode in RETURN_MODES:
        options = {"return_target": 0.5, "return_target_units": "normalized"}
    policy = load_policy(tiny, mode, **options)
    s = states(2, seed=4)
    inputs = mode_inputs(mode, DS, DA)
    first = policy.act(s[0], **inputs)
    answer = policy.act(s[1], **inputs)
    applied = first if mode != "forward_dynamics" else inputs["planned_actions"][0]
    context = Context(mode, s[1], s[:1], np.clip(np.atleast_2d(applied), -1, 1), **inputs)
    if mode in RETURN_MODES:
        context.return_target = 1.0  # normalised 0.5 of the range [0, 2]
    expected = Predictor.from_model(tiny.model, tiny.normalizer).predict(context)
    if mode == "forward_dynamics":
        assert answer.shape == (1, DS)
        np.testing.assert_allclose(answer, expected.next_states[:1], atol=1e-6)
    else:
        assert answer.shape == (DA,) and np.abs(answer).max() <= 1.0
        np.testing.assert_allclose(answer, np.clip(expected.action, -1, 1), atol=1e-6)
    assert set(policy.last) == {"action", "action_chunk", "next_states"}


def test_a_mode_gets_exactly_its_inputs(tiny):
    with pytest.raises(ValueError, match="inverse_dynamics needs future_states"):
        load_policy(tiny, "inverse_dynamics").act(states(1)[0])
    with pytest.raises(ValueError, match="behavior_cloning takes no planned_actions"):
        load_policy(tiny, "behavior_cloning").act(states(1)[0], planned_actions=np.zeros(DA))
    with pytest.raises(ValueError, match="unknown mode 'flying'"):
        load_policy(tiny, "flying")
    with pytest.raises(ValueError, match=r"observation: expected shape \(5,\)"):
        load_policy(tiny, "behavior_cloning").act(np.zeros(6))


# -- local and remote --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def walker_node() -> Iterator[InferenceNode]:
    """The shipped model on a node, started as tests/serving/conftest.py starts one."""
    context = zmq.Context()
    config = ServeConfig(checkpoint="default", bind="tcp://127.0.0.1:*",
                         backend=BackendConfig(backend="torch", max_batch=8))  # fmt: skip
    node = InferenceNode(config, context=context)
    node.run_in_thread()
    try:
        assert node.wait_ready(60)
        yield node
    finally:
        node.close()
        context.destroy(linger=0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", list(MODES))
def test_a_local_and_a_node_policy_give_the_same_answers(walker, walker_states, walker_node, mode):
    options: dict[str, Any] = {"return_target": 900} if mode in RETURN_MODES else {}
    inputs = mode_inputs(mode, 24, 6)
    local = load_policy(walker, mode, **options)
    with connect_policy(walker_node.endpoint, mode, timeout_ms=10_000, **options) as remote:
        assert remote.model_id == local.model_id
        np.testing.assert_array_equal(remote.action_low, local.action_low)
        for state in walker_states:  # three steps: the history travels too
            np.testing.assert_allclose(remote.act(state, **inputs), local.act(state, **inputs),
                                       atol=1e-5)  # fmt: skip
        if mode in RETURN_MODES:  # refused alike
            for policy in (local, remote):
                with pytest.raises(OutOfRange):
                    policy.act(walker_states[0], return_target=5000)


# -- the documentation -------------------------------------------------------------------------
def doc_examples() -> list[tuple[str, str]]:
    """(section heading, code) of every ```python block of docs/python-api.md."""
    text = DOC.read_text()
    examples = []
    for match in re.finditer(r"```python\n(.*?)\n```", text, re.S):
        heading = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        examples.append((heading[-1] if heading else "top", match.group(1)))
    return examples


def test_the_page_has_the_examples_it_promises():
    headings = [h for h, _ in doc_examples()]
    assert headings == [
        "Load the shipped model",
        "Run an episode of walker-walk",
        "Track a demonstration (inverse dynamics)",
        "Predict the next state (forward dynamics)",
        "The same policy on an inference node",
    ]
    assert "docs/python-api.md" in (ROOT / "README.md").read_text()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("heading", "code"), doc_examples(), ids=[h for h, _ in doc_examples()])
def test_the_examples_of_the_page_run(heading, code, walker_node, capsys):
    code = code.replace("tcp://127.0.0.1:5555", walker_node.endpoint)
    namespace: dict[str, Any] = {}
    exec(compile(code, f"docs/python-api.md#{heading}", "exec"), namespace)
    printed = capsys.readouterr().out
    if "action" in namespace:
        action = namespace["action"]
        assert action.shape == (6,) and np.isfinite(action).all() and np.abs(action).max() <= 1
    if heading == "Load the shipped model":
        assert "Policy('mtm-walker-walk@step25000', mode='return_conditioned', local)" in printed
    if heading == "Run an episode of walker-walk":
        assert 0 < namespace["episode_return"] <= 50  # rewards are in [0, 1] per step
    if heading == "Predict the next state (forward dynamics)":
        errors, no_change = np.mean(namespace["errors"]), np.mean(namespace["no_change"])
        assert 0 < errors < 2 * no_change  # in the walker's units, not garbage
