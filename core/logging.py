"""structlog set-up: JSON in services, pretty on a terminal; secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(password|secret_value|secret_string|token|dsn|credential)", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop secret-looking values and passwords inside URLs, whatever logged them."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "<redacted>"
        elif isinstance(value, str):
            event_dict[key] = _URL_PASSWORD.sub(r"\1<redacted>@", value)
    return event_dict


def _stamp_service(service: str) -> Any:
    def stamp(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return stamp


def configure_logging(*, verbose: bool = False, quiet: bool = False, json_output: bool | None = None,
                      service: str | None = None) -> None:
    """`quiet` (commands): warnings only, the command's own output is the story.
    `service`: stamped on every line that does not name one (`hostplane logs` merges by it)."""
    if json_output is None:
        json_output = not sys.stderr.isatty()
    level = logging.DEBUG if verbose else logging.INFO
    if (quiet or not json_output) and not verbose:
        level = logging.WARNING  # a terminal shows command output, not service chatter
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *([_stamp_service(service)] if service else []),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # sys.stderr looked up per logger, not frozen now: a stream swapped in for a while
        # (a CLI runner, a captured test) must not stay the log target after it closes.
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class _WithoutSecretValues(logging.Filter):
    """botocore logs request parameters and response bodies at DEBUG; those of Secrets
    Manager calls carry the value. Drop them, whoever turned DEBUG on."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record we cannot render cannot be checked: drop it
            return False
        return "SecretString" not in text and "SecretBinary" not in text


def keep_secret_values_out_of_botocore_logs() -> None:
    """Installed by the AWS client factory (core.aws), so every client is covered."""
    for name in ("botocore.endpoint", "botocore.parsers", "aiobotocore.endpoint"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _WithoutSecretValues) for f in logger.filters):
            logger.addFilter(_WithoutSecretValues())
