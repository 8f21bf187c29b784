"""structlog configuration: JSON lines by default, console rendering on a TTY.

Secrets never reach a log line: values under secret-looking keys are replaced, and every
rendered string (messages, exception text, anything a library logs) is scrubbed of bearer
tokens and Authorization header values. Libraries' stdlib loggers (aiohttp's server and
access loggers, kubernetes_asyncio, ...) are routed through the same processors.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values are never rendered, wherever they appear in an event.
SECRET_KEYS = frozenset({"token", "authorization", "password", "secret", "bearer"})
REDACTED = "[redacted]"
# "Bearer <token>" anywhere, and whatever follows "Authorization:" up to the end of the line
# or a quote (how parsers and tracebacks quote a header line).
_SECRET_TEXT = re.compile(
    r"(?i)(\bbearer\s+)[^\s'\"\\,;]+|(\bauthorization['\"]?\s*[:=]\s*)[^\r\n'\"]+"
)


def scrub(text: str) -> str:
    if "earer" not in text and "uthorization" not in text and "AUTHORIZATION" not in text \
            and "BEARER" not in text:
        return text
    return _SECRET_TEXT.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = REDACTED
        else:
            event[key] = _scrub_value(event[key])
    return event


def configure(*, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog once per process. `json=None` picks console output on a TTY."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,  # after format_exc_info: exception text is scrubbed too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the stdlib: same format, same redaction, same stream.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact_secrets, renderer],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_canaryd", False):
            root.removeHandler(old)
    handler._canaryd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
