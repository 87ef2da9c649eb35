"""What the inference worker holds for each camera it owns, and for each frame it scored in a batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.scoring.camera import CameraStream
from workers.bus import schemas
from workers.inference.alerts import AlertTracker

# the rate a camera's ingest measures moves by this share of the slot's before its frame counts follow it,
# so that a rate that wobbles around a rounding edge does not flip them back and forth
RATE_TOLERANCE = 0.2


def rate_changed(slot_rate: float, measured: float) -> bool:
    return abs(measured - slot_rate) > RATE_TOLERANCE * slot_rate


@dataclass
class CameraSlot:
    """What a worker holds for a camera it owns."""

    config: schemas.CameraConfig
    stream: CameraStream
    tracker: AlertTracker
    mask: np.ndarray | None
    rate: float  # frames a second that reach the detector: the smoothing and the alerts count frames at it
    read_id: str = "0"  # "0": our pending entries first (claimed from a dead owner); then ">"
    needs_history: bool = True
    scored: int = 0
    lag_s: float | None = None  # capture to written score of the last frame scored: stays put when idle
    last_seq: int | None = None  # of the last frame scored: a jump past it means frames were dropped
    session: int | None = None  # of the last frame scored: a new one closes the open alert
    checkpoint_ts: float = 0.0  # when the stream's state was last saved whole (0: at the next batch)
    dropped: int = 0
    heat_minute: int | None = None  # the minute `heat` sums the anomalous error maps of
    heat: np.ndarray | None = None


@dataclass
class ScoredFrame:
    camera: str
    entry_id: str
    frame: schemas.FrameMessage
    error_map: np.ndarray
    raw: float = 0.0
    score: float = 0.0
    learned: bool = True  # whether the raw score entered the camera's statistics (CameraScorer.learned_last)
    events: list[tuple[schemas.AlertEventType, schemas.Alert]] = field(default_factory=list)
