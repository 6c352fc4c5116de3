"""Settings and the command line: the config dataclasses are the one declaration.

A command's arguments are a dataclass (``SimControlCommand``, ...): its own options are fields
with a docstring each, and its settings (``SessionConfig``, ``ServeConfig``, ...) one field
marked :data:`SETTINGS`, whose fields become flags without a prefix: ``--task``, ``--episodes``,
``--controller.mode``, ``--controller.fallback.hold-ticks``. Names, types, defaults and help
all come from the dataclasses (a field's docstring, or its trailing comment, is its help);
`tyro <https://brentyi.github.io/tyro/>`_ builds the parser. Precedence, lowest first: the
dataclass defaults, ``--config FILE`` (or a shipped preset's name), command-specific presets
such as ``--calibration``, ``--set key=value`` (any field, dotted), then the flags.

Short names a command has always had (``--mode`` for ``--controller.mode``, ``--lockstep`` for
``--controller.no-realtime``) are an alias table per command, listed in its ``--help``.

Bad values end in the one error exit (:func:`mtm_robot.cli.run`): ``error: ...`` on one line,
exit 2. Nothing here imports torch, so ``--help`` answers before any model code loads.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import tyro

from mtm_robot.config import load_config
from mtm_robot.errors import ConfigError

C = TypeVar("C")

#: Marks the settings field of a command dataclass: its fields are flags without a prefix.
SETTINGS = tyro.conf.arg(name="")
#: The type of a command's ``set`` field: ``--set key=value``, repeatable.
Overrides = Annotated[list[str], tyro.conf.UseAppendAction]
#: Lines of tyro's error panel that are not the message.
_NOT_MESSAGE = ("Argument helptext", "For full helptext", "Perhaps you meant", "usage:")
_BOX = re.compile(r"[│╭╮╰╯─┬┴├┤]+|-{3,}")


def settings_field(cls: type) -> dataclasses.Field[Any] | None:
    """The field of command dataclass ``cls`` marked :data:`SETTINGS`, or None."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if SETTINGS in getattr(hints[f.name], "__metadata__", ()):
            return f
    return None


def expand_aliases(argv: Sequence[str], aliases: Mapping[str, Sequence[str]]) -> list[str]:
    """``argv`` with each short name replaced by the flags it stands for (``--mode X`` ->
    ``--controller.mode X``, ``--mode=X`` -> ``--controller.mode=X``)."""
    out: list[str] = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if name in aliases:
            flags = list(aliases[name])
            if equals:
                flags[-1] = f"{flags[-1]}={value}"
            out += flags
        else:
            out.append(arg)
    return out


def alias_help(aliases: Mapping[str, Sequence[str]]) -> str:
    """The alias table as a paragraph of ``--help``."""
    if not aliases:
        return ""
    pairs = [f"{name} = {' '.join(flags)}" for name, flags in aliases.items()]
    return "\nShort names: " + "; ".join(pairs) + "."


def _one_line(panel: str) -> str:
    """The message of tyro's error panel (title, rules, message, help), on one line."""
    rows = [(raw, " ".join(_BOX.sub(" ", raw).split())) for raw in panel.splitlines()]
    rows = [(raw, text) for raw, text in rows if raw.strip()]  # a rule: raw text, no words
    message: list[str] = []
    for _, text in rows[1:]:  # the first row is the panel's title ("Value error")
        if text.startswith(_NOT_MESSAGE) or (not text and message):
            break
        if text:
            message.append(re.sub(r"^Error parsing (?!-)[\w.]+: ", "", text))
    return " ".join(message) or " ".join(text for _, text in rows)


def parse_command(
    cls: type[C],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    presets: Mapping[str, Callable[[str], list[str]]] | None = None,
) -> C:
    """Parse ``argv`` into command dataclass ``cls`` (see the module docstring).

    ``presets`` maps an option of ``cls`` (e.g. ``--calibration``) to a function from its value
    to ``--set``-style overrides, applied after ``--config`` and before ``--set``.
    """
    aliases = aliases or {}
    args = expand_aliases(list(sys.argv[1:] if argv is None else argv), aliases)
    default = None
    settings = settings_field(cls)
    if settings is not None:  # --config, presets and --set make the defaults the flags change
        pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        pre.add_argument("--config")
        pre.add_argument("--set", action="append", default=[])
        for option in presets or {}:
            pre.add_argument(option)
        known, _ = pre.parse_known_args([a for a in args if a not in ("-h", "--help")])
        overrides: list[str] = []
        for option, to_overrides in (presets or {}).items():
            value = getattr(known, option.lstrip("-").replace("-", "_"))
            if value:
                overrides += to_overrides(value)
        settings_type = typing.get_type_hints(cls)[settings.name]  # Annotated[...] stripped
        base = load_config(settings_type, known.config, overrides + known.set)
        default = cls(**{settings.name: base})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return tyro.cli(
                cls,
                args=args,
                prog=prog,
                description=(description or "") + alias_help(aliases),
                default=default if default is not None else tyro.MISSING_NONPROP,
            )
    except ValueError as exc:  # the settings' own validation (__post_init__)
        raise ConfigError(f"command line: {exc}") from None
    except SystemExit as exc:
        if not exc.code:  # --help
            sys.stdout.write(out.getvalue())
            raise
        message = _one_line(err.getvalue() + out.getvalue())
        raise ConfigError(f"{message} (see {prog} --help)") from None
