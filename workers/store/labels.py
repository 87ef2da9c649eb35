"""Operator feedback labels in Redis: verdicts (normal / abnormal) on ranges of a camera's frames.

Labels are durable (AOF) and never trimmed. Ids are increasing numbers, so where labels overlap the later
one is the verdict (`frame_labels`), while every earlier label stays as history. Posting again what the
latest labels already say returns the existing label instead of a duplicate. Each write is one MULTI,
guarded by WATCH so that two operators posting at once neither duplicate a label nor lose one.

Proposals follow the human-in-the-loop scheme of self-trained ordinal regression (Pang et al., CVPR 2020,
section 4.5): among the top 10% scored frames still buffered, the k highest unlabelled peaks, each with
its adjacent frames, which share the verdict the operator gives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Self

import redis
from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.bus import keys, schemas
from workers.bus.schemas import CameraId, FeedbackLabel, FeedbackVerdict

log = logging.getLogger(__name__)

MAX_LABELLED_FRAMES = 1_000_000  # frames one label may cover
MAX_FRAME_SEQ = 2**53 - 1  # frame numbers stay exact in JSON clients
TOP_FRACTION = 0.1  # proposals come from this top share of the scored frames (l = floor(0.1 N) in the paper)
MAX_SCANNED_SCORES = 100_000  # newest score entries considered for proposals
SCORE_READ_BATCH = 5_000
LABEL_SCAN_BATCH = 200  # with a verdict filter, index entries read at a time

FeedbackCategory = Annotated[
    str,
    Field(
        pattern=schemas.FEEDBACK_CATEGORY_PATTERN,
        description="Event type, e.g. 'cyclist': 1-40 letters, digits, spaces, '_' or '-'.",
    ),
]


class FeedbackRequest(BaseModel):
    """A verdict on a camera's frames start_seq..end_seq (inclusive), or on the frames of an alert."""

    model_config = ConfigDict(extra="forbid")

    camera: CameraId | None = Field(None, description="With start_seq (and end_seq): the frames labelled.")
    start_seq: int | None = Field(None, strict=True, ge=0, le=MAX_FRAME_SEQ)
    end_seq: int | None = Field(
        None, strict=True, ge=0, le=MAX_FRAME_SEQ, description="Inclusive; start_seq when left out."
    )
    alert_id: str | None = Field(
        None, min_length=1, max_length=200, description="Instead of a range: the frames of this alert."
    )
    label: FeedbackVerdict
    category: FeedbackCategory | None = None
    note: str | None = Field(None, max_length=schemas.MAX_FEEDBACK_NOTE)

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        by_range = self.camera is not None or self.start_seq is not None or self.end_seq is not None
        if by_range == (self.alert_id is not None):
            raise ValueError("give either alert_id, or camera with start_seq (and end_seq)")
        if not by_range:
            return self
        if self.camera is None or self.start_seq is None:
            raise ValueError("a frame range needs both camera and start_seq")
        end_seq = self.start_seq if self.end_seq is None else self.end_seq
        if end_seq < self.start_seq:
            raise ValueError(f"end_seq {end_seq} is before start_seq {self.start_seq}")
        if end_seq - self.start_seq + 1 > MAX_LABELLED_FRAMES:
            raise ValueError(f"one label covers at most {MAX_LABELLED_FRAMES} frames")
        self.end_seq = end_seq
        return self


class UnknownTarget(LookupError):
    """The request names an alert or a camera Vigil does not know; the message says which."""


@dataclass(frozen=True)
class LabelPage:
    labels: list[FeedbackLabel]
    next_before: int | None  # pass as `before` for the next (older) page; None at the end


@dataclass(frozen=True)
class Proposal:
    seq: int
    score: float
    ts: float
    start_seq: int  # adjacent frames to label with it, clipped to the scored frames still buffered
    end_seq: int


@dataclass(frozen=True)
class ProposalSet:
    scored_frames: int  # score entries considered
    top_frames: int  # how many of them form the top TOP_FRACTION
    proposals: list[Proposal]


# ---------------------------------------------------------------- reading
def _parse(raw: bytes | None) -> FeedbackLabel | None:
    return FeedbackLabel.model_validate_json(raw) if raw is not None else None


def get_label(client: redis.Redis, label_id: str) -> FeedbackLabel | None:
    return _parse(client.hget(keys.FEEDBACK_LABELS, label_id))


def labels_of(client: redis.Redis, ids: Iterable[bytes | str]) -> list[FeedbackLabel]:
    """The labels of those ids that exist, in their order."""
    ids = list(ids)
    if not ids:
        return []
    return [label for raw in client.hmget(keys.FEEDBACK_LABELS, ids) if (label := _parse(raw)) is not None]


def camera_labels(client: redis.Redis, camera: str, *, after: int = 0) -> list[FeedbackLabel]:
    """A camera's labels numbered above `after`, oldest first."""
    ids = client.zrangebyscore(keys.feedback_labels_by_camera(camera), f"({after}", "+inf")
    return labels_of(client, ids)


def overlaps(label: FeedbackLabel, first_seq: int, last_seq: int) -> bool:
    return label.start_seq <= last_seq and label.end_seq >= first_seq


def latest_frame_labels(
    client: redis.Redis, camera: str, first_seq: int, last_seq: int
) -> dict[int, FeedbackLabel]:
    """seq -> the label in force for each labelled frame of `camera` in first_seq..last_seq (inclusive):
    where labels overlap, the latest wins. Frames no label covers are absent."""
    latest: dict[int, FeedbackLabel] = {}
    for label in camera_labels(client, camera):  # oldest first: later labels overwrite earlier ones
        if overlaps(label, first_seq, last_seq):
            for seq in range(max(label.start_seq, first_seq), min(label.end_seq, last_seq) + 1):
                latest[seq] = label
    return latest


def frame_labels(client: redis.Redis, camera: str, first_seq: int, last_seq: int) -> dict[int, str]:
    """seq -> "normal" / "abnormal" for each labelled frame of `camera` in first_seq..last_seq (inclusive)."""
    return {
        seq: label.label for seq, label in latest_frame_labels(client, camera, first_seq, last_seq).items()
    }


def accepted_kinds(client: redis.Redis, cameras: Iterable[str]) -> set[str]:
    """The kinds of event the site accepts: the categories of labels "normal" with a category that are
    still the verdict on at least one of their frames, on any of `cameras`. Deleting such a label, or
    labelling all of its frames again, withdraws its kind unless another label still accepts it."""
    kinds: set[str] = set()
    for camera in cameras:
        history = camera_labels(client, camera)  # oldest first
        for index, label in enumerate(history):
            if (
                label.accepts_kind
                and label.category not in kinds
                and not _covered(label, history[index + 1 :])
            ):
                assert label.category is not None
                kinds.add(label.category)
    return kinds


def _covered(label: FeedbackLabel, later: list[FeedbackLabel]) -> bool:
    """Whether the `later` labels together cover every frame of `label`."""
    spans = sorted(
        (other.start_seq, other.end_seq) for other in later if overlaps(other, label.start_seq, label.end_seq)
    )
    first_uncovered = label.start_seq
    for start, end in spans:
        if start > first_uncovered:
            return False
        first_uncovered = max(first_uncovered, end + 1)
    return first_uncovered > label.end_seq


def labels_version(client: redis.Redis, camera: str) -> tuple[int, float]:
    """Changes whenever a label of the camera is added or deleted: how many it has, and the newest's number."""
    index = keys.feedback_labels_by_camera(camera)
    newest = client.zrevrange(index, 0, 0, withscores=True)
    return int(client.zcard(index)), float(newest[0][1]) if newest else 0.0


def alert_verdict_peaks(client: redis.Redis, camera: str) -> tuple[list[float], list[float]]:
    """The peak scores of a camera's labelled alerts by their latest label: (marked normal without a
    category, marked abnormal); what models/scoring/label_threshold.py turns into the camera's threshold."""
    latest: dict[str, FeedbackLabel] = {}
    for label in camera_labels(client, camera):  # oldest first: a later label of an alert replaces it
        if label.alert_id is not None:
            latest[label.alert_id] = label
    if not latest:
        return [], []
    normal, abnormal = [], []
    for alert_id, raw in zip(latest, client.hmget(keys.ALERTS, list(latest)), strict=True):
        if raw is None:  # an alert no longer stored: its label no longer counts
            continue
        peak, label = schemas.Alert.model_validate_json(raw).peak_score, latest[alert_id]
        if label.label == "abnormal":
            abnormal.append(peak)
        elif not label.accepts_kind:  # a false alarm
            normal.append(peak)
    return normal, abnormal


def list_labels(
    client: redis.Redis,
    *,
    limit: int,
    camera: str | None = None,
    label: FeedbackVerdict | None = None,
    before: int | None = None,
) -> LabelPage:
    """Labels newest first, numbered below `before` when given (pages keyed by position, not offset)."""
    index = keys.feedback_labels_by_camera(camera) if camera is not None else keys.FEEDBACK_LABELS_BY_ID
    batch = limit + 1 if label is None else max(limit + 1, LABEL_SCAN_BATCH)
    upper = f"({before}" if before is not None else "+inf"
    found: list[FeedbackLabel] = []
    while len(found) <= limit:
        rows: list[tuple[bytes, float]] = client.zrevrangebyscore(
            index, upper, "-inf", start=0, num=batch, withscores=True
        )
        if not rows:
            break
        upper = f"({int(rows[-1][1])}"
        found += [
            item for item in labels_of(client, (member for member, _ in rows)) if label in (None, item.label)
        ]
    page = found[:limit]
    return LabelPage(page, page[-1].number if len(found) > limit else None)


# ---------------------------------------------------------------- writing
def _range_field(start_seq: int, end_seq: int) -> str:
    return f"{start_seq}-{end_seq}"


def camera_known(client: redis.Redis, camera: str) -> bool:
    """A registered camera, or one whose frames or scores are still buffered (e.g. since removed)."""
    return bool(client.hexists(keys.CAMERAS, camera)) or bool(
        client.exists(keys.scores_stream(camera), keys.frames_stream(camera))
    )


def _target(client: redis.Redis, request: FeedbackRequest) -> tuple[str, int, int]:
    """(camera, start_seq, end_seq) a request labels: its range, or its alert's frames so far."""
    if request.alert_id is not None:
        raw = client.hget(keys.ALERTS, request.alert_id)
        if raw is None:
            raise UnknownTarget(f"no alert with id '{request.alert_id}'")
        alert = schemas.Alert.model_validate_json(raw)
        return alert.camera, alert.start_seq, alert.end_seq if alert.end_seq is not None else alert.last_seq
    assert request.camera is not None and request.start_seq is not None and request.end_seq is not None
    if not camera_known(client, request.camera):
        raise UnknownTarget(f"no camera with id '{request.camera}'")
    return request.camera, request.start_seq, request.end_seq


def add_label(client: redis.Redis, request: FeedbackRequest) -> tuple[FeedbackLabel, bool]:
    """Store an operator's verdict; returns (label, created).

    When the newest label over exactly this range already says the same (label and category) and no later
    label overlaps it, that label is returned with created=False and nothing is written.
    Raises UnknownTarget for an unknown alert or camera.
    """
    camera, start_seq, end_seq = _target(client, request)
    by_camera = keys.feedback_labels_by_camera(camera)
    ranges = keys.feedback_ranges(camera)
    range_field = _range_field(start_seq, end_seq)

    def write(pipe: redis.client.Pipeline) -> tuple[FeedbackLabel, bool]:
        newest_id = pipe.hget(ranges, range_field)
        newest = get_label(pipe, newest_id.decode()) if newest_id is not None else None
        if newest is not None and (newest.label, newest.category) == (request.label, request.category):
            later = camera_labels(pipe, camera, after=newest.number)
            if not any(overlaps(other, start_seq, end_seq) for other in later):
                return newest, False
        number = int(pipe.get(keys.FEEDBACK_LABEL_COUNTER) or 0) + 1
        label = FeedbackLabel(
            id=str(number),
            camera=camera,
            start_seq=start_seq,
            end_seq=end_seq,
            label=request.label,
            category=request.category,
            note=request.note,
            alert_id=request.alert_id,
        )
        pipe.multi()
        pipe.set(keys.FEEDBACK_LABEL_COUNTER, number)
        pipe.hset(keys.FEEDBACK_LABELS, label.id, label.model_dump_json())
        pipe.zadd(keys.FEEDBACK_LABELS_BY_ID, {label.id: number})
        pipe.zadd(by_camera, {label.id: number})
        pipe.hset(ranges, range_field, label.id)
        return label, True

    label, created = client.transaction(
        write, keys.FEEDBACK_LABEL_COUNTER, by_camera, ranges, value_from_callable=True
    )
    if created:
        log.info(
            "label %s: camera %s frames %d-%d %s%s",
            label.id,
            camera,
            start_seq,
            end_seq,
            label.label,
            f" ({label.category})" if label.category else "",
        )
    return label, created


def delete_label(client: redis.Redis, label_id: str) -> FeedbackLabel | None:
    """Remove a label (the verdicts of earlier labels over its frames apply again); None if unknown."""

    def remove(pipe: redis.client.Pipeline) -> FeedbackLabel | None:
        label = get_label(pipe, label_id)
        if label is None:
            return None
        ranges = keys.feedback_ranges(label.camera)
        range_field = _range_field(label.start_seq, label.end_seq)
        points_here = pipe.hget(ranges, range_field) == label.id.encode()
        pipe.multi()
        pipe.hdel(keys.FEEDBACK_LABELS, label.id)
        pipe.zrem(keys.FEEDBACK_LABELS_BY_ID, label.id)
        pipe.zrem(keys.feedback_labels_by_camera(label.camera), label.id)
        if points_here:
            pipe.hdel(ranges, range_field)
        return label

    # Every label write changes the labels hash: watching it covers the range pointer too.
    label = client.transaction(remove, keys.FEEDBACK_LABELS, value_from_callable=True)
    if label is not None:
        log.info(
            "label %s deleted: camera %s frames %d-%d", label.id, label.camera, label.start_seq, label.end_seq
        )
    return label


# ---------------------------------------------------------------- proposals
def latest_scores(client: redis.Redis, camera: str) -> list[schemas.ScoreMessage]:
    """The camera's scored frames still in its score stream (newest MAX_SCANNED_SCORES), one per seq."""
    by_seq: dict[int, schemas.ScoreMessage] = {}
    upper = "+"
    while len(by_seq) < MAX_SCANNED_SCORES:
        entries = client.xrevrange(keys.scores_stream(camera), max=upper, min="-", count=SCORE_READ_BATCH)
        if not entries:
            break
        for _, fields in entries:
            message = schemas.ScoreMessage.from_fields(fields)
            by_seq.setdefault(message.seq, message)  # newest first: a re-scored frame keeps its latest score
        upper = f"({entries[-1][0].decode()}"
    return sorted(by_seq.values(), key=lambda message: message.seq)


def pick_proposals(
    scores: list[schemas.ScoreMessage], labelled: set[int], *, k: int, adjacent: int
) -> ProposalSet:
    """Up to k frames to ask an operator about: the highest-scored unlabelled frames among the top
    TOP_FRACTION, no two within `adjacent` frames of each other, each with its adjacent frames."""
    if not scores:
        return ProposalSet(0, 0, [])
    top_count = max(1, int(TOP_FRACTION * len(scores)))
    top = sorted(scores, key=lambda message: (-message.score, message.seq))[:top_count]
    first_seq, last_seq = scores[0].seq, scores[-1].seq
    picked: list[Proposal] = []
    for message in top:
        if len(picked) == k:
            break
        if message.seq in labelled or any(abs(message.seq - other.seq) <= adjacent for other in picked):
            continue
        picked.append(
            Proposal(
                seq=message.seq,
                score=message.score,
                ts=message.ts,
                start_seq=max(first_seq, message.seq - adjacent),
                end_seq=min(last_seq, message.seq + adjacent),
            )
        )
    return ProposalSet(len(scores), top_count, picked)


def propose_frames(client: redis.Redis, camera: str, *, k: int, adjacent: int) -> ProposalSet:
    """`pick_proposals` over the camera's buffered scores, leaving out frames already labelled."""
    scores = latest_scores(client, camera)
    labelled = set(frame_labels(client, camera, scores[0].seq, scores[-1].seq)) if scores else set()
    return pick_proposals(scores, labelled, k=k, adjacent=adjacent)
