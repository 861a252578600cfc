"""What every part of a run's configuration shares: it is frozen, checks itself when built, names the
fields that make a run's identity, and tells the command line its defaults and choices."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

from chatspace.errors import UsageError


def option_name(field_name: str) -> str:
    """The command-line spelling of a field: `rows_per_shard` is `--rows-per-shard`."""
    return "--" + field_name.replace("_", "-")


def one_of(choices: tuple[str, ...]) -> str:
    """`a, b or c`: the choices as a sentence names them."""
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def choice(default: Any, choices: tuple[str, ...]) -> Any:
    """A dataclass field that takes one of `choices` (None, where that is the default, stays allowed)."""
    return dataclasses.field(default=default, metadata={"choices": choices})


def check_positive(field_name: str, value: float | None, what: str = "positive") -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{option_name(field_name)} must be {what}")


class ConfigPart:
    """Base of the frozen dataclasses a RunConfig is made of.

    IDENTITY names the fields whose change changes the rows written (None: every field); ADDED_LATER
    holds identity fields that came after runs existed, with the defaults at which they stay out of the
    output hash, so those runs keep their hash and can still be resumed.
    """

    IDENTITY: ClassVar[tuple[str, ...] | None] = None
    ADDED_LATER: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise UsageError(f"{option_name(f.name)} must be {one_of(choices)}, not {value!r}")
        self.validate()

    def validate(self) -> None:
        """Checks beyond the choice lists; raise UsageError naming the option."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def identity_fields(cls) -> tuple[str, ...]:
        return cls.field_names() if cls.IDENTITY is None else cls.IDENTITY

    @classmethod
    def default(cls, name: str) -> Any:
        return field_default(cls, name)

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...] | None:
        return field_choices(cls, name)

    @classmethod
    def value_type(cls, name: str) -> type:
        return field_type(cls, name)


# What the command line needs to know of any options dataclass (a ConfigPart, the map's ReduceParams).


def _field(cls: type, name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def field_default(cls: type, name: str) -> Any:
    """The field's default; one computed when the object is built (the output root) reads as None."""
    f = _field(cls, name)
    return None if f.default is dataclasses.MISSING else f.default


def field_choices(cls: type, name: str) -> tuple[str, ...] | None:
    return _field(cls, name).metadata.get("choices")


def field_type(cls: type, name: str) -> type:
    """The field's type without `| None` (int, float, str, bool), for the command line to parse."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint
