"""The one frozen run configuration, made of its parts and written whole into the manifest.

`output_hash()` covers exactly the fields that change what lands on disk, so a rerun may resume into an
existing output only when it would write the same rows (vLLM-style config hashing). The parts name
those fields; the hash is taken over one flat payload, as it always was, so existing runs keep theirs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from chatspace.config.base import ConfigPart
from chatspace.config.data import DataConfig
from chatspace.config.encoder import ENCODERS, EncoderConfig, Mode, OpenAIConfig, SentenceTransformerConfig
from chatspace.config.executor import ExecutorConfig
from chatspace.config.output import OutputConfig
from chatspace.config.sampling import SamplingConfig
from chatspace.config.splits import SplitSpec
from chatspace.errors import UsageError

#: The parts' attribute names on RunConfig, in the order a manifest records their fields.
PARTS: dict[str, type[ConfigPart]] = {
    "data": DataConfig,
    "sampling": SamplingConfig,
    "encoder": SentenceTransformerConfig,
    "output": OutputConfig,
    "execution": ExecutorConfig,
}
_ENCODER_KINDS = (SentenceTransformerConfig, OpenAIConfig)


def _part_of_field() -> dict[str, str]:
    """Flat option name -> the RunConfig attribute of the part that holds it (both encoder kinds)."""
    owner = {}
    for attr, part in [*PARTS.items(), ("encoder", OpenAIConfig)]:
        for name in part.field_names():
            owner.setdefault(name, attr)
    return owner


_FIELD_PART = _part_of_field()


def part_of(name: str) -> type[ConfigPart]:
    """The part class that holds the flat option `name` (SentenceTransformer's before OpenAI's)."""
    for part in [*PARTS.values(), OpenAIConfig]:
        if name in part.field_names():
            return part
    raise KeyError(name)


_LATER_DEFAULTS: dict[str, Any] = {
    k: v for part in [*PARTS.values(), OpenAIConfig] for k, v in part.ADDED_LATER.items()
}


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; the same object drives the CLI, the Python API and the tests.

    Build it from its parts, or from flat options (`RunConfig.from_options(dataset=..., n=...)`, what
    the command line and config files give). Code reads an option from its part (`cfg.sampling.seed`),
    so a field of the other encoder kind is never read by mistake; `option_value` reads one by its
    flat name, for writing and comparing whole configs.
    """

    data: DataConfig
    encoder: EncoderConfig = field(default_factory=SentenceTransformerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    execution: ExecutorConfig = field(default_factory=ExecutorConfig)
    config_file: str | None = None  # the file the options came from, if any (recorded, not hashed)

    # Fields whose change changes the rows written: a resume into an output requires them equal.
    OUTPUT_FIELDS: ClassVar[tuple[str, ...]] = (
        "mode",
        *dict.fromkeys(
            name
            for part in (DataConfig, SamplingConfig, *_ENCODER_KINDS, OutputConfig, ExecutorConfig)
            for name in part.identity_fields()
        ),
    )

    def __post_init__(self) -> None:
        for attr, part in PARTS.items():
            kinds = _ENCODER_KINDS if attr == "encoder" else (part,)
            if not isinstance(getattr(self, attr), kinds):
                raise TypeError(f"RunConfig.{attr} must be a {' or '.join(k.__name__ for k in kinds)}")
        if self.mode is Mode.OPENAI and self.data.long_text != "truncate":
            raise UsageError("--long-text chunk/mean needs a local model's tokenizer; embed-openai truncates")

    @classmethod
    def from_options(cls, mode: str = Mode.SENTENCE_TRANSFORMER, **options: Any) -> RunConfig:
        """A RunConfig from flat option names, as the command line, config files and manifests spell
        them; `mode` picks the encoder (hf: SentenceTransformer, openai: the OpenAI API)."""
        if mode not in ENCODERS:
            raise UsageError(f"unknown mode {mode!r}")
        mode = Mode(mode)
        unknown = sorted(k for k in options if k not in _FIELD_PART and k != "config_file")
        if unknown:
            raise TypeError(f"RunConfig has no option(s) {', '.join(unknown)}")
        encoder = ENCODERS[mode]
        other = OpenAIConfig if encoder is SentenceTransformerConfig else SentenceTransformerConfig
        taken = cls.option_names(mode)
        for name, value in options.items():
            # The other encoder's options are accepted only at their defaults (a manifest lists them all).
            if name not in taken and value != other.default(name):
                raise UsageError(f"{name} does not apply to mode {str(mode)!r}")
        parts: dict[str, Any] = {}
        for attr, part in {**PARTS, "encoder": encoder}.items():
            names = part.field_names()
            parts[attr] = part(**{k: v for k, v in options.items() if k in names})
        return cls(**parts, config_file=options.get("config_file"))

    @classmethod
    def option_names(cls, mode: str = Mode.SENTENCE_TRANSFORMER) -> frozenset[str]:
        """The flat options a run of `mode` takes."""
        parts = {**PARTS, "encoder": ENCODERS[mode]}.values()
        return frozenset({"config_file", *(name for part in parts for name in part.field_names())})

    def option_value(self, name: str) -> Any:
        """The flat option `name` as the command line and a manifest spell it; an option of the other
        encoder kind reads as that kind's default (it does not apply to this run). For writing and
        comparing whole configs; code that runs a step reads its part (`cfg.sampling.seed`)."""
        if name == "mode":
            return self.mode
        attr = _FIELD_PART.get(name)
        if attr is None:
            raise KeyError(name)
        part = getattr(self, attr)
        if name in type(part).field_names():
            return getattr(part, name)
        return (
            OpenAIConfig if isinstance(part, SentenceTransformerConfig) else SentenceTransformerConfig
        ).default(name)

    @property
    def mode(self) -> Mode:
        """SentenceTransformer workers (spelt "hf") or the OpenAI API, by the encoder part."""
        return Mode.OPENAI if isinstance(self.encoder, OpenAIConfig) else Mode.SENTENCE_TRANSFORMER

    @property
    def split_spec(self) -> SplitSpec:
        return self.data.split_spec

    @property
    def base_split(self) -> str:
        return self.data.base_split

    def to_dict(self) -> dict[str, Any]:
        """Every option flat (both encoder kinds', the other at its defaults): the manifest's `config`."""
        d: dict[str, Any] = {"mode": str(self.mode)}
        for name in _FIELD_PART:
            d[name] = self.option_value(name)
        d["devices"] = list(self.execution.devices)
        d["config_file"] = self.config_file
        return d

    def output_hash(self) -> str:
        # Fields added later stay out of the payload at their defaults, so runs made before they
        # existed keep their hash (and can still be resumed).
        values = {k: self.option_value(k) for k in self.OUTPUT_FIELDS}
        payload = {
            k: str(v) if k == "mode" else v
            for k, v in values.items()
            if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some options changed, named flat (`run_id=...`) or as whole parts (`data=...`)."""
        by_part: dict[str, dict[str, Any]] = {}
        whole = {k: changes.pop(k) for k in list(changes) if k in PARTS or k == "config_file"}
        for name, value in changes.items():
            attr = _FIELD_PART.get(name)
            if attr is None:
                raise TypeError(f"RunConfig has no option {name!r}")
            by_part.setdefault(attr, {})[name] = value
        for attr, values in by_part.items():
            whole[attr] = dataclasses.replace(whole.get(attr, getattr(self, attr)), **values)
        return dataclasses.replace(self, **whole)
