"""Loading canaryd's settings: a YAML file, with CANARYD_* environment overrides, validated
as a whole by the pure `canaryd.core.settings.parse_settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from canaryd.core.settings import ConfigError, Settings, parse_settings


def load_settings(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> Settings:
    """Read a YAML config file, apply CANARYD_* environment overrides, validate it all."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [("(root)", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [("(root)", "must be a mapping")])
    env = os.environ if env is None else env
    overrides = {
        ("prometheus", "url"): env.get("CANARYD_PROMETHEUS_URL"),
        ("prometheus", "timeout"): env.get("CANARYD_PROMETHEUS_TIMEOUT"),
        ("prometheus", "retries"): env.get("CANARYD_PROMETHEUS_RETRIES"),
        ("controller", "tick"): env.get("CANARYD_CONTROLLER_TICK"),
        ("controller", "checksKept"): env.get("CANARYD_CONTROLLER_CHECKS_KEPT"),
    }
    for (section, key), value in overrides.items():
        if value:
            data.setdefault(section, {})[key] = value
    return parse_settings(data, source=str(path))
