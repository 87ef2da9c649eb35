"""Response models of the API, and the masking that keeps camera credentials out of every response."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from workers.bus.schemas import Alert, AlertEventType, CameraConfig, CameraStatus
from workers.proc.redaction import redact


class CameraOut(CameraConfig):
    """A camera's settings (credentials in `source` masked) and its latest status from the ingest worker."""

    status: CameraStatus | None = Field(None, description="Absent until the ingest worker reports.")
    label_threshold: float | None = Field(
        None,
        description="The alert threshold the camera's labelled alerts ask for (alerts marked normal without a "
        "category raise it, up to VIGIL_ALERTS__LABEL_CEILING); alerts need a score over the larger of it "
        "and the threshold in force without labels. None: no label asks for one.",
    )
    view_moved: bool = Field(
        False,
        description="The retraining worker found this camera's view moved (its walkers move where the "
        "model's place map says nothing does): the model in service scores it without the place stream. "
        "Point the camera back, or leave it: the other evidence goes on as before.",
    )

    @classmethod
    def of(
        cls,
        config: CameraConfig,
        status: CameraStatus | None,
        label_threshold: float | None,
        view_moved: bool = False,
    ) -> CameraOut:
        if status is not None:
            status = status.model_copy(update={"message": redact(status.message)})
        return cls(
            **{**config.model_dump(), "source": redact(config.source)},
            status=status,
            label_threshold=label_threshold,
            view_moved=view_moved,
        )


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list, newest first."""

    items: list[ItemT]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next (older) page; null at the end."
    )


class AlertList(Page[Alert]):
    pass


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
    # enabled cameras that are not delivering frames; they do not make the service unready (one dead camera
    # must not take the API out of a load balancer), but an operator sees them here
    cameras_down: dict[str, str] = Field(default_factory=dict, description="camera id -> its ingest state")


# Every CameraConfig field but the id, each optional: the fields sent are merged into the stored camera
# and the result is validated as a whole CameraConfig.
CameraPatch = create_model(
    "CameraPatch",
    __config__=ConfigDict(extra="forbid"),
    **{
        name: (field.annotation | None, Field(None, description=field.description))
        for name, field in CameraConfig.model_fields.items()
        if name != "id"
    },
)
