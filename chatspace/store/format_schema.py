"""The manifest format, documented once: `chatspace/resources/manifest.schema.json` (JSON Schema), which
also describes the unit records. Checking against it needs the `jsonschema` package (a dev dependency).

With CHATSPACE_CHECK_FORMAT=1 in the environment (the test suite sets it) every manifest and unit record
chatspace writes is checked before it is written, so the schema cannot drift from what the code writes.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from typing import Any

import orjson

from chatspace.errors import ChatspaceError

CHECK_ENV = "CHATSPACE_CHECK_FORMAT"


@functools.cache
def format_schema() -> dict[str, Any]:
    return orjson.loads(resources.files("chatspace").joinpath("resources/manifest.schema.json").read_bytes())


@functools.cache
def _validator(kind: str):
    import jsonschema

    schema = format_schema()
    target = schema if kind == "manifest" else {"$ref": f"#/$defs/{kind}", "$defs": schema["$defs"]}
    return jsonschema.Draft202012Validator(target)


def format_problems(document: Any, kind: str = "manifest") -> list[str]:
    """Where `document` departs from the schema (a manifest, or `unit_record`, ...), one line each."""
    errors = sorted(_validator(kind).iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


def check_before_writing(document: Any, kind: str) -> None:
    """Under CHATSPACE_CHECK_FORMAT, refuse to write a document the schema does not describe."""
    if not os.environ.get(CHECK_ENV):
        return
    problems = format_problems(document, kind)
    if problems:
        raise ChatspaceError(
            f"a {kind} that manifest.schema.json does not describe: {'; '.join(problems[:5])}"
        )
