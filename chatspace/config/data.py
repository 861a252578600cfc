"""Which rows of which dataset a run reads, and which text of each row it embeds."""

from __future__ import annotations

from dataclasses import dataclass

from chatspace.config.base import ConfigPart, choice
from chatspace.config.splits import SplitSpec, parse_split
from chatspace.errors import UsageError

SOURCES = ("auto", "huggingface", "local")
EXTRACT_MODES = ("text", "first-assistant", "first-user", "all-turns", "each-turn")
#: What a text longer than the model's limit becomes: its first tokens (truncate), several rows of
#: the limit's length (chunk), or one row whose vector is the token-weighted mean of its chunks' (mean).
LONG_TEXT_MODES = ("truncate", "chunk", "mean")
# The names datasets give a conversation's two speakers; each set reads as the first name.
ASSISTANT_ROLE_NAMES = frozenset({"assistant", "gpt", "bot", "model", "chatgpt", "ai"})
USER_ROLE_NAMES = frozenset({"user", "human", "prompter"})


def normalise_role(name: str) -> str:
    """`human` and `user` are one role, as are `gpt` and `assistant`; any other name stays itself."""
    name = name.strip().lower()
    if name in ASSISTANT_ROLE_NAMES:
        return "assistant"
    return "user" if name in USER_ROLE_NAMES else name


def canonical_roles(value: str | list | tuple) -> str:
    """`--roles human,gpt` as the run records it: `assistant,user` (normalised, sorted, once each)."""
    names = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    roles = sorted({normalise_role(n) for n in names if n.strip()})
    if not roles:
        raise UsageError("--roles needs at least one role, e.g. --roles user,assistant")
    return ",".join(roles)


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
    long_text: str = choice("truncate", LONG_TEXT_MODES)
    chunk_overlap: int = 0
    roles: str | None = None  # comma-separated, kept in canonical form (see chatspace.data.extract)

    # At these defaults the fields stay out of the output hash: runs made before them keep theirs.
    ADDED_LATER = {"long_text": "truncate", "chunk_overlap": 0, "roles": None}

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
        self._validate_long_rows()

    def _validate_long_rows(self) -> None:
        if self.chunk_overlap is None or self.chunk_overlap < 0:
            raise UsageError("--chunk-overlap must be 0 or more tokens")
        if self.chunk_overlap and self.long_text == "truncate":
            raise UsageError("--chunk-overlap applies to --long-text chunk or mean, not truncate")
        if self.roles is not None:
            if self.extract not in ("each-turn", "all-turns"):
                raise UsageError(f"--roles applies to --extract each-turn or all-turns, not {self.extract}")
            object.__setattr__(self, "roles", canonical_roles(self.roles))

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
