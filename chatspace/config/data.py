"""Which rows of which dataset a run reads, and which text of each row it embeds."""

from __future__ import annotations

from dataclasses import dataclass

from chatspace.config.base import ConfigPart, choice
from chatspace.config.splits import SplitSpec, parse_split
from chatspace.errors import UsageError

SOURCES = ("auto", "huggingface", "local")
EXTRACT_MODES = ("text", "first-assistant", "first-user", "all-turns")


@dataclass(frozen=True)
class DataConfig(ConfigPart):
    """The dataset, its split and the text to embed: every field changes the rows written."""

    dataset: str
    subset: str | None = None
    split: str = "train"
    source: str = choice("auto", SOURCES)  # auto decides by whether the path exists
    text_field: str = "text"
    extract: str = choice("text", EXTRACT_MODES)
    id_field: str | None = None

    def validate(self) -> None:
        if not self.dataset:
            raise UsageError("--dataset is required")
        for option, value in (
            ("--dataset", self.dataset),
            ("--subset", self.subset),
            ("--split", self.split),
        ):
            check_path_text(option, value)
        parse_split(self.split)  # a malformed slice is a usage error now, not a misread later

    @property
    def split_spec(self) -> SplitSpec:
        """The split and its optional `datasets`-style slice (`train[:100]`)."""
        return parse_split(self.split)

    @property
    def base_split(self) -> str:
        """The split's own name, without a slice: what files are read and row ids are named by."""
        return self.split_spec.name


def check_path_text(option: str, value: object) -> None:
    """Text that becomes part of an output path (made safe by store.layout.slug): no NUL, and a split
    or model name not blank."""
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise UsageError(f"{option} must be text without NUL characters, not {value!r}")
    if option in ("--split", "--model") and not value.strip():
        raise UsageError(f"{option} must not be empty")
