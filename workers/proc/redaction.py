"""Credentials out of every text that leaves a process: log lines, status messages, API answers, metrics."""

from __future__ import annotations

import logging
import re

MASK = "***"
# user:password@ (or a bare token@) after a scheme, anywhere in a text such as an error message.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s]+)@")
# User info made only of ${NAME} references (filled in by the ingest worker) names no secret: kept.
_REFERENCES_ONLY = re.compile(r"(?:\$\{[A-Za-z_][A-Za-z0-9_]*\}|:)+")
# ?password=... &token=... and the like in a URL query.
_SECRET_QUERY_VALUE = re.compile(
    r"(?P<name>[?&][^=&#\s]*(?:pass|pwd|token|secret|key|auth|sig)[^=&#\s]*=)(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    if _REFERENCES_ONLY.fullmatch(match["userinfo"]):
        return match[0]
    return f"{match['scheme']}{MASK}@"


def _mask_query_value(match: re.Match[str]) -> str:
    return match[0] if _REFERENCES_ONLY.fullmatch(match["value"]) else f"{match['name']}{MASK}"


def redact(text: str) -> str:
    """`text` with URL user info and secret-looking URL query values replaced by *** (${NAME} references kept)."""
    return _SECRET_QUERY_VALUE.sub(_mask_query_value, _USERINFO.sub(_mask_userinfo, text))


class RedactingFilter(logging.Filter):
    """A handler filter that masks credentials in each record it writes: the message and any traceback text.

    The safety net under the explicit redact() calls: an exception message that carries a source URL
    (a traceback from a bug) or a request line with ?token= never reaches a log file as it was.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
