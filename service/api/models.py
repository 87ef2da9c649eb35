"""Response models of the API, and the masking that keeps camera credentials out of every response."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from workers.keys import Alert, AlertEventType, CameraConfig, CameraStatus

MASK = "***"
# user:password@ (or a bare token@) after a scheme, anywhere in a text such as an error message.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]+@")
# ?password=... &token=... and the like in a URL query.
_SECRET_QUERY_VALUE = re.compile(
    r"(?P<name>[?&][^=&#\s]*(?:pass|pwd|token|secret|key|auth|sig)[^=&#\s]*=)[^&#\s]*", re.IGNORECASE
)


def mask_credentials(text: str) -> str:
    """`text` with URL user info and secret-looking URL query values replaced by ***."""
    masked = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    return _SECRET_QUERY_VALUE.sub(rf"\g<name>{MASK}", masked)


class CameraOut(CameraConfig):
    """A camera's settings (credentials in `source` masked) and its latest status from the ingest worker."""

    status: CameraStatus | None = Field(None, description="Absent until the ingest worker reports.")

    @classmethod
    def of(cls, config: CameraConfig, status: CameraStatus | None) -> CameraOut:
        if status is not None:
            status = status.model_copy(update={"message": mask_credentials(status.message)})
        return cls(**{**config.model_dump(), "source": mask_credentials(config.source)}, status=status)


class AlertList(BaseModel):
    items: list[Alert]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next (older) page; null at the end."
    )


class AlertEventOut(BaseModel):
    """One frame of /ws/alerts."""

    id: str = Field(description="Event stream id; reconnect with ?last_id= to resume after it.")
    type: AlertEventType
    alert: Alert


class ReadinessOut(BaseModel):
    ready: bool
    redis: bool
    live_workers: dict[str, int]
    missing: list[str]
    detail: str
