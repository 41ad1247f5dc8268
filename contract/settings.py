"""Settings defined once: each runtime's configuration is a frozen dataclass whose fields say,
through ``setting(...)``, their default, help text and check.

Everything else is derived from that one definition:

- the command line (``add_arguments`` / ``from_namespace``): ``--batch-size`` from the field
  ``batch_size``, falling back to ``$FL_BATCH_SIZE``, then to the default;
- the values a pipeline task receives (``from_values``): component inputs by field name, the
  rest from ``FL_*`` variables or defaults;
- the pipeline's parameters and their checks (``pipelines.parameters``), the KFP components'
  signatures (``components.generated``) and the README's parameter tables (``markdown_table``).

A check takes the name to show (``--batch-size`` on the command line, ``batch_size`` in the
pipeline) and the value, and returns one sentence naming what is accepted, or None. Checks
that relate two settings (``min_clients`` against ``num_clients``) are ``CrossCheck``s of the
class, listed in its ``cross_checks``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

Check = Callable[[str, Any], "str | None"]  # (name shown, value) -> problem or None
Namer = Callable[[str], str]  # field name -> the name a user knows it by
T = TypeVar("T")


class SettingsError(ValueError):
    """One or more settings are refused; the message lists every problem on one line."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Spec:
    """What a field of a settings class says about itself (``setting`` builds it)."""

    help: str
    check: Check | None = None
    flag: str | None = None  # default: --field-name
    aliases: tuple[str, ...] = ()  # older flag spellings, still accepted
    parameter: str | None = None  # the pipeline parameter's name, when not the field's
    pipeline_default: Any = None  # the pipeline's default for a setting the CLI requires
    wired: bool = False  # the pipeline supplies it (URL, token, ids, paths): no parameter
    task_input: bool = True  # False: a pipeline task takes it from FL_* or the default
    secret: bool = False  # never on a command line, in a report or in a log
    report: bool = True  # listed among the run's settings in the report


def setting(default: Any = MISSING, help: str = "", **spec: Any) -> Any:
    """A settings-class field; without a default the setting is required. For example
    ``batch_size: int = setting(32, "local batch size", check=at_least(1))``."""
    return dataclasses.field(default=default, metadata={"setting": Spec(help, **spec)})


@dataclass(frozen=True)
class Setting:
    """One field of a settings class, with its resolved type."""

    name: str
    type: type
    default: Any
    spec: Spec

    @property
    def required(self) -> bool:
        """True when the setting has no default, so every run must give it a value."""
        return self.default is MISSING

    @property
    def flag(self) -> str:
        """The command-line flag: the spec's, or ``--field-name`` by default."""
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable that also sets it: ``--batch-size`` -> ``FL_BATCH_SIZE``."""
        return "FL_" + self.flag.lstrip("-").upper().replace("-", "_")

    @property
    def parameter(self) -> str:
        """The pipeline parameter's name: the field's, unless the spec names another."""
        return self.spec.parameter or self.name

    @property
    def parameter_default(self) -> Any:
        """The pipeline parameter's default: the spec's ``pipeline_default`` where it has one
        (a setting the CLI requires), else the field's default."""
        return self.default if self.spec.pipeline_default is None else (
            self.spec.pipeline_default)

    @property
    def parse(self) -> Callable[[str], Any]:
        """Turns a command-line or environment string into this setting's type (argparse
        names it in its errors: ``invalid int value``)."""
        return parse_bool if self.type is bool else self.type


@dataclass(frozen=True)
class CrossCheck:
    """A check over several settings; skipped unless all of ``names`` have values."""

    names: tuple[str, ...]
    check: Callable[[Mapping[str, Any], Namer], str | None]


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings of a settings class, in definition order."""
    hints = typing.get_type_hints(cls)
    return tuple(Setting(f.name, hints[f.name], f.default, f.metadata["setting"])
                 for f in dataclasses.fields(cls) if "setting" in f.metadata)


def problems(cls: type, values: Mapping[str, Any], name_of: Namer = str) -> list[str]:
    """Every refused value of ``values`` (field name -> value), as sentences naming the
    setting by ``name_of(field name)``; values of unknown fields are not looked at."""
    found = []
    for item in settings_of(cls):
        if item.name in values and item.spec.check is not None:
            found.append(item.spec.check(name_of(item.name), values[item.name]))
    for cross in getattr(cls, "cross_checks", ()):
        if all(values.get(name) is not None for name in cross.names):
            found.append(cross.check(values, name_of))
    return [p for p in found if p]


def validated(instance: T, name_of: Namer = str) -> T:
    """``instance`` itself, or SettingsError naming every problem."""
    found = problems(type(instance), values_of(instance), name_of)
    if found:
        raise SettingsError(found)
    return instance


def values_of(instance: Any) -> dict[str, Any]:
    """Field name -> value of a settings instance."""
    return {item.name: getattr(instance, item.name) for item in settings_of(type(instance))}


def from_values(cls: type[T], values: Mapping[str, Any],
                env: Mapping[str, str] | None = None) -> T:
    """A checked instance from ``values`` (what a pipeline task received), the settings it
    did not receive from ``env``'s ``FL_*`` variables, then from their defaults."""
    env = os.environ if env is None else env
    chosen = {}
    for item in settings_of(cls):
        if item.name in values:
            chosen[item.name] = values[item.name]
        elif item.env in env:
            chosen[item.name] = _parsed(item, env[item.env], item.env)
    missing = [s.name for s in settings_of(cls) if s.required and s.name not in chosen]
    if missing:
        raise SettingsError([f"{name} is required" for name in missing])
    return validated(cls(**chosen))


# ---- the command line -------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                  env: Mapping[str, str] | None = None) -> None:
    """One flag per setting, ``--flag`` falling back to ``$FL_FLAG``; a setting without a
    default is required unless its variable is set. The command line wins."""
    env = os.environ if env is None else env
    for item in settings_of(cls):
        # A variable's text is converted by argparse like a flag's (and refused like one).
        default = env.get(item.env, item.default)
        required = default is MISSING
        kwargs: dict[str, Any] = {"dest": item.name, "help": f"{item.spec.help} (env {item.env})",
                                  "required": required, "type": item.parse}
        if not required:
            kwargs["default"] = default
        if item.type is bool:
            kwargs.update(nargs="?", const=True, metavar="BOOL")
        parser.add_argument(item.flag, *item.spec.aliases, **kwargs)


def command_line(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """A runtime's whole command line: one flag per setting of ``cls``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{description} Every flag also reads FL_<FLAG> from the "
        "environment (--num-clients from FL_NUM_CLIENTS); the command line wins.")
    add_arguments(parser, cls)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, cls: type[T],
                       argv: Sequence[str] | None = None) -> T:
    """A checked instance from the command line; a refused value exits 2 with argparse's
    one-line usage error naming the flag."""
    namespace = parser.parse_args(argv)
    flags = {item.name: item.flag for item in settings_of(cls)}
    try:
        return validated(cls(**{name: getattr(namespace, name) for name in flags}),
                         flags.__getitem__)
    except SettingsError as exc:
        parser.error(str(exc))


def parse_bool(text: str | bool) -> bool:
    """``true``/``false`` (also 1/0, yes/no) as a bool."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


parse_bool.__name__ = "bool"  # argparse: invalid bool value: 'maybe'


def _parsed(item: Setting, text: str, source: str) -> Any:
    try:
        return item.parse(text)
    except ValueError:
        raise SettingsError([f"{source}={text!r} is not a {item.type.__name__}"]) from None


# ---- checks ---------------------------------------------------------------------------

def at_least(low: float, *, strict: bool = False) -> Check:
    """Refuse values below ``low`` (or equal to it, with ``strict``)."""
    def check(name: str, value: Any) -> str | None:
        if value > low if strict else value >= low:
            return None
        bound = f"greater than {low:g}" if strict else f"at least {low:g}"
        return f"{name} must be {bound}, got {value!r}"
    return check


def in_range(low: int, high: int) -> Check:
    """Refuse values outside ``low..high``."""
    def check(name: str, value: Any) -> str | None:
        return None if low <= value <= high else f"{name} must be in {low}..{high}, got {value!r}"
    return check


def one_of(accepted: Iterable[Any]) -> Check:
    """Refuse values not in ``accepted``; the message lists them."""
    accepted = tuple(accepted)

    def check(name: str, value: Any) -> str | None:
        if value in accepted:
            return None
        return f"{name} {value!r} is not accepted; accepted: {', '.join(map(str, accepted))}"
    return check


def parses(parse: Callable[[Any], object], error: type[Exception]) -> Check:
    """Refuse values ``parse`` raises ``error`` for; its message says what is accepted."""
    def check(name: str, value: Any) -> str | None:
        try:
            parse(value)
        except error as exc:
            return f"{name}: {exc}"
        return None
    return check


# ---- documentation ----------------------------------------------------------------------

def flags_table(cls: type) -> str:
    """The README's table of a command line: flag, variable, default, help."""
    rows = [f"| `{' / '.join((s.flag, *s.spec.aliases))}` | `{s.env}` | {shown_default(s.default)}"
            f" | {s.spec.help} |" for s in settings_of(cls)]
    return "\n".join(["| flag | env | default | what it does |", "|---|---|---|---|", *rows])


def shown_default(default: Any) -> str:
    """A default as the README's tables show it."""
    if default is MISSING:
        return "required"
    return f"`{default!r}`" if isinstance(default, str) else f"`{default}`"
