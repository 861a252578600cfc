"""Run options from a TOML or YAML file: the command line's long names, flat (`n = 1000`)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from chatspace.errors import UsageError


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML run config; keys may use dashes or underscores (CLI long names)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file not found: {p}")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text()) or {}
        else:
            data = tomllib.loads(p.read_text())
    except Exception as e:  # noqa: BLE001 - any parse error is the user's to fix
        detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        raise UsageError(f"cannot parse config file {p}: {detail}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {p} must hold a table of options")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
