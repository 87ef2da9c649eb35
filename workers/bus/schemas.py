"""The schema of every message and record stored in Redis (keys.py names the keys and streams that hold them)."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, ClassVar, Literal, Self

import cv2
import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _check_camera_id(value: str) -> str:
    if not re.fullmatch(CAMERA_ID_PATTERN, value):
        raise ValueError("camera id: 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    return value


# The pattern is also published in the JSON schema (OpenAPI), so clients and fuzzers know it.
CameraId = Annotated[
    str, Field(json_schema_extra={"pattern": CAMERA_ID_PATTERN}), AfterValidator(_check_camera_id)
]


def now() -> float:
    return time.time()


# Numbers of camera settings are strict: JSON numbers only (true/false or "1" are refused, not coerced).
Coordinate = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]


class Zone(BaseModel):
    """A polygon in normalized image coordinates (0..1), e.g. an area to ignore."""

    points: list[tuple[Coordinate, Coordinate]] = Field(min_length=3, max_length=64)


MAX_RETENTION_S = 10 * 365 * 86400.0
RetentionSpan = Annotated[float, Field(strict=True, ge=60, le=MAX_RETENTION_S)]


class CameraRetention(BaseModel):
    """A camera's own retention spans in seconds; a span left out is the site's (VIGIL_RETENTION__*)."""

    model_config = ConfigDict(extra="forbid")

    frames_s: RetentionSpan | None = Field(
        None, description="Analysis frames and scores (alert clips, the retraining window)."
    )
    display_s: RetentionSpan | None = Field(
        None, description="Display JPEGs (alert snapshots, heat map backgrounds, the latest image)."
    )
    error_maps_s: RetentionSpan | None = Field(None, description="Pixel error maps (heat map overlays).")
    heat_s: RetentionSpan | None = Field(None, description="Per-minute heat maps (the camera heat map).")


class CameraConfig(BaseModel):
    id: CameraId
    source: str = Field(
        min_length=1, max_length=2048, description="rtsp://, http(s)://, a video file or a frame folder"
    )
    fps: float | None = Field(None, strict=True, gt=0, le=60, description="Analysis fps (default: settings).")
    width: int | None = Field(None, strict=True, ge=32, le=1920)
    height: int | None = Field(None, strict=True, ge=32, le=1080)
    loop: bool = Field(False, strict=True, description="Files and folders: start again at the end.")
    recording: bool = Field(
        False,
        strict=True,
        description="Network sources: a recording that finishes (or loops) at its end; off: a camera, "
        "whose end is a disconnect (reconnect with backoff), even if it announces a duration.",
    )
    threshold: float | None = Field(
        None, strict=True, gt=0, lt=1, description="Alert threshold for this camera."
    )
    ignore_zones: list[Zone] = Field(default_factory=list, max_length=32)
    enabled: bool = Field(True, strict=True)  # strict: true/false only, not 0/1 or "no"
    retention: CameraRetention | None = Field(
        None, description="How long this camera's media is kept, where not the site's spans."
    )


CameraState = Literal["starting", "streaming", "reconnecting", "finished", "error", "stopped"]


class CameraStatus(BaseModel):
    camera: str
    state: CameraState
    message: str = ""
    frames: int = 0
    dropped: int = Field(0, description="Frames decoded but not stored because Redis was unavailable.")
    reconnects: int = 0
    fps: float = 0.0
    width: int | None = None
    height: int | None = None
    source_size: tuple[int, int] | None = None  # (height, width) of the source's frames, before the resize
    last_frame_ts: float | None = None
    updated_ts: float = Field(default_factory=now)


class StorageReport(BaseModel):
    """Redis memory held, in bytes, per camera and kind (frames, display, error_maps, ...) and for the
    site's records (alerts, alert_events, labels, ...), as the last retention sweep measured it."""

    ts: float = Field(default_factory=now)
    cameras: dict[str, dict[str, int]] = Field(default_factory=dict)
    site: dict[str, int] = Field(default_factory=dict)


class WorkerHeartbeat(BaseModel):
    id: str
    role: Literal["ingest", "inference", "retrain", "api", "notify"]
    pid: int
    host: str
    started_ts: float
    ts: float = Field(default_factory=now)
    info: dict[str, Any] = Field(default_factory=dict)


class StreamMessage(BaseModel):
    """A flat message stored as the fields of a Redis stream entry."""

    binary_fields: ClassVar[frozenset[str]] = frozenset()

    def to_fields(self) -> dict[str, bytes | str]:
        out: dict[str, bytes | str] = {}
        for name, value in self:
            if value is None:
                continue
            if name in self.binary_fields:
                out[name] = value
            elif isinstance(value, bool):
                out[name] = "1" if value else "0"
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes | str]) -> Self:
        data: dict[str, Any] = {}
        for key, value in fields.items():
            name = key.decode() if isinstance(key, bytes) else key
            if name not in cls.binary_fields and isinstance(value, bytes):
                value = value.decode()
            data[name] = value
        return cls.model_validate(data)


class FrameMessage(StreamMessage):
    """One analysis frame: uint8 grayscale, row-major, height x width."""

    binary_fields: ClassVar[frozenset[str]] = frozenset({"gray"})

    camera: str
    seq: int = Field(ge=0, description="Frame number within the camera, monotonic across reconnects.")
    ts: float = Field(description="Capture time, seconds since the epoch.")
    session: int = Field(ge=0, description="Increments at every (re)connect: frame history restarts there.")
    width: int
    height: int
    gray: bytes

    def array(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The frame as uint8 [height, width]; resized (area averaging) to `size` (height, width) if given."""
        gray = np.frombuffer(self.gray, dtype=np.uint8).reshape(self.height, self.width)
        if size is not None and gray.shape != size:
            gray = cv2.resize(gray, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return gray


class DisplayMessage(StreamMessage):
    binary_fields: ClassVar[frozenset[str]] = frozenset({"jpeg"})

    camera: str
    seq: int
    ts: float
    jpeg: bytes


class ScoreMessage(StreamMessage):
    camera: str
    seq: int
    ts: float
    frame_id: str = Field(description="The frames-stream entry id that was scored.")
    score: float = Field(description="Normalized anomaly score in [0, 1].")
    raw: float = Field(description="The detector's frame score before normalization.")
    model: str = Field(description="Model version that scored the frame.")
    anomalous: bool
    scored_ts: float = Field(default_factory=now)
    session: int | None = Field(None, description="The frame's stream session (None: written before 0.x).")


class Alert(BaseModel):
    id: str
    camera: str
    state: Literal["open", "closed"]
    start_ts: float
    end_ts: float | None = None
    start_seq: int
    end_seq: int | None = None
    last_seq: int
    peak_score: float
    peak_seq: int
    peak_ts: float
    model: str
    end_reason: str | None = Field(
        None,
        description="Why an alert closed other than by its scores (camera reconnected, stopped, disabled).",
    )
    category: str | None = Field(
        None, description="Event type: the operator's label, else the category head's prediction ('unknown')."
    )
    category_confidence: float | None = Field(None, description="1 for an operator's label.")
    updated_ts: float = Field(default_factory=now)


AlertEventType = Literal["new", "update", "end"]


class AlertEvent(StreamMessage):
    """An entry of the alert event stream: the alert as it stood after the event."""

    type: AlertEventType
    alert_id: str
    camera: str
    alert: str = Field(description="Alert JSON")
    event_id: str | None = Field(
        None, description="Redis Cluster: `camera/outbox entry id`, unique per event (a replay keeps it)."
    )

    @classmethod
    def of(cls, event_type: AlertEventType, alert: Alert) -> AlertEvent:
        return cls(type=event_type, alert_id=alert.id, camera=alert.camera, alert=alert.model_dump_json())

    def parsed_alert(self) -> Alert:
        return Alert.model_validate_json(self.alert)


ModelStatus = Literal["serving", "retired", "rejected", "rolled_back"]


class ModelVersion(BaseModel):
    version: str
    path: str = Field(description="The served weights (.onnx or .pt); empty for a rejected candidate.")
    parent: str | None = None
    created_ts: float = Field(default_factory=now)
    kind: str = Field(description="Detector kind: its evidence streams, e.g. 'motion-appearance'.")
    # feedback: the model in service with kinds of event operators no longer accept taken out
    origin: Literal["published", "cold_start", "self_training", "feedback"] = "published"
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Mined counts, validation figures, durations of the cycle."
    )
    alert_threshold: float | None = Field(
        None, description="Adaptive alert threshold (models' consensus); None: the configured one."
    )
    status: ModelStatus = "serving"
    reason: str = ""
    place_silenced_cameras: list[str] = Field(
        default_factory=list,
        description="Cameras whose view moved away from what the model's place map knows (found by the "
        "retraining worker's view check): scored without the place stream, the other evidence as before.",
    )
    sha256: str | None = Field(
        None, description="Checksum of the served file, whose bytes Redis keeps (model_blob_key)."
    )
    size_bytes: int | None = Field(None, description="Size of the served file.")


class RetrainCycle(BaseModel):
    """What one retraining cycle did (the API and metrics show the newest)."""

    started_ts: float
    seconds: float
    cameras: list[str]
    window_frames: int
    accepted: bool
    reason: str
    candidate: str | None = None
    parent: str | None = None
    mined: dict[str, int] = Field(default_factory=dict)
    report: dict[str, Any] = Field(default_factory=dict)


# ---- event categories (written by the retraining worker, merged into alerts by the API)
class AlertDescriptor(BaseModel):
    """The detector's view of an alert's peak frame, what its category is predicted from."""

    model: str
    vector: list[float]


class AlertCategory(BaseModel):
    category: str = Field(description="An operator's label, a predicted category, or 'unknown'.")
    confidence: float
    source: Literal["operator", "predicted"]
    examples: int = Field(0, description="Labelled alerts the prediction learned from.")
    ts: float = Field(default_factory=now)


# ---- operator feedback labels: whether an inclusive range of a camera's frames (by seq) is normal or abnormal
FeedbackVerdict = Literal["normal", "abnormal"]
FEEDBACK_CATEGORY_PATTERN = r"^[A-Za-z0-9_-]([A-Za-z0-9 _-]{0,38}[A-Za-z0-9_-])?$"
MAX_FEEDBACK_NOTE = 500


class FeedbackLabel(BaseModel):
    """An operator's verdict on a camera's frames start_seq..end_seq; where labels overlap, the later wins."""

    id: str = Field(description="An increasing number: a larger id is a later label.")
    camera: str
    start_seq: int = Field(description="First labelled frame (inclusive).")
    end_seq: int = Field(description="Last labelled frame (inclusive).")
    label: FeedbackVerdict
    category: str | None = Field(None, description="Event type, e.g. 'cyclist'.")
    note: str | None = None
    alert_id: str | None = Field(None, description="The alert the label was given on, if any.")
    created_ts: float = Field(default_factory=now)

    @property
    def number(self) -> int:
        return int(self.id)

    @property
    def accepts_kind(self) -> bool:
        """Normal with a category: a kind of event the site accepts (cyclists), not a false alarm."""
        return self.label == "normal" and self.category is not None


MAX_SNOOZE_S = 7 * 24 * 3600.0


class SnoozedZone(Zone):
    until_ts: float


class Snooze(BaseModel):
    """A camera's snoozes: no alert from the whole camera until until_ts, none from a zone until its own."""

    camera: CameraId
    until_ts: float = 0.0
    zones: list[SnoozedZone] = Field(default_factory=list, max_length=32)

    def active(self, now_ts: float) -> Snooze | None:
        """What is still in force at now_ts; None when nothing is."""
        zones = [zone for zone in self.zones if zone.until_ts > now_ts]
        if self.until_ts <= now_ts and not zones:
            return None
        return Snooze(camera=self.camera, until_ts=max(self.until_ts, 0.0), zones=zones)
