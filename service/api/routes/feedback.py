"""Operator feedback: label frames or alerts normal / abnormal (the retraining worker follows the labels),
list and delete labels, and propose the frames most useful to label now."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, Field

from service.api.deps import OperatorDep, RedisDep, SettingsDep
from service.api.schemas import Page
from workers.bus.schemas import CAMERA_ID_PATTERN, FeedbackLabel, FeedbackVerdict
from workers.inference.label_thresholds import REFRESH_S, camera_label_threshold
from workers.store import frames, labels
from workers.store.labels import FeedbackRequest, Proposal, UnknownTarget

router = APIRouter(prefix="/api/feedback", tags=["feedback"])

LabelIdPath = Annotated[str, Path(description="Label id.")]
CURSOR_PATTERN = r"^[0-9]{1,16}$"
DISPLAY_NEAR = 2  # display entries read on each side of a frame's time


class FeedbackSaved(FeedbackLabel):
    detail: str = Field(description="What was recorded, for the operator.")
    label_threshold: float | None = Field(
        None,
        description="The alert threshold the camera's labelled alerts now ask for (alerts marked normal "
        "without a category raise it to just above their peak, up to VIGIL_ALERTS__LABEL_CEILING); none: "
        "the camera's threshold is as configured.",
    )


class FeedbackList(Page[FeedbackLabel]):
    pass


class ProposalOut(BaseModel):
    seq: int = Field(description="The frame proposed.")
    score: float
    ts: float = Field(description="Capture time of the frame, seconds since the epoch.")
    start_seq: int = Field(description="First of the adjacent frames to label with it.")
    end_seq: int = Field(description="Last of the adjacent frames to label with it (inclusive).")
    image_url: str | None = Field(
        None, description="The display image nearest in time to the frame, if one is still kept."
    )


class ProposalsOut(BaseModel):
    camera: str
    scored_frames: int = Field(description="Scored frames still buffered that were considered.")
    top_frames: int = Field(description="How many of them form the top 10% that proposals come from.")
    items: list[ProposalOut] = Field(description="Highest score first.")


def _not_found(label_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no label with id '{label_id}'")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[OperatorDep],
    summary="Label a camera's frames (or an alert's) normal or abnormal; the latest label wins",
    responses={
        200: {"model": FeedbackSaved, "description": "The latest labels already say this: nothing added."},
        404: {"description": "Unknown alert or camera."},
        422: {"description": "Invalid label, range or category."},
        401: {"description": "Operator token needed."},
    },
)
def add_feedback(
    request: FeedbackRequest, client: RedisDep, settings: SettingsDep, response: Response
) -> FeedbackSaved:
    try:
        label, created = labels.add_label(client, request)
    except UnknownTarget as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    frames = f"frames {label.start_seq}-{label.end_seq} of {label.camera}"
    if created:
        detail = f"Label {label.id}: {frames}."
    else:
        response.status_code = status.HTTP_200_OK
        detail = f"Already recorded as label {label.id} ({frames})."
    asked = camera_label_threshold(client, label.camera, settings.alerts.label_ceiling)
    if asked is not None and label.alert_id is not None:
        detail += (
            f" {label.camera} now pages only over a score of {asked:.2f} where its threshold is lower"
            f" (its labelled alerts ask for it; in force within {REFRESH_S:.0f} s)."
        )
    return FeedbackSaved(**label.model_dump(), detail=detail, label_threshold=asked)


@router.get("", summary="Labels, newest first")
def list_feedback(
    client: RedisDep,
    camera: Annotated[
        str | None, Query(pattern=CAMERA_ID_PATTERN, description="Only this camera's labels.")
    ] = None,
    label: Annotated[FeedbackVerdict | None, Query(description="Only normal or only abnormal.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Most labels in one page.")] = 50,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page.")
    ] = None,
) -> FeedbackList:
    page = labels.list_labels(
        client, limit=limit, camera=camera, label=label, before=int(cursor) if cursor is not None else None
    )
    next_cursor = str(page.next_before) if page.next_before is not None else None
    return FeedbackList(items=page.labels, next_cursor=next_cursor)


def _image_url(client: redis.Redis, camera: str, proposal: Proposal, tolerance_s: float) -> str | None:
    """The display frame nearest in time to the proposed frame, if it is that frame or near enough."""
    near = frames.displays_near(client, camera, proposal.ts, DISPLAY_NEAR)
    if not near:
        return None
    entry_id, message = near[0]
    if message.seq != proposal.seq and abs(message.ts - proposal.ts) > tolerance_s:
        return None
    return f"/api/cameras/{camera}/display/{entry_id}.jpg"


@router.get(
    "/proposals",
    summary="The frames most useful to label now: the top-scored unlabelled peaks with their adjacent frames",
    responses={404: {"description": "Unknown camera."}},
)
def feedback_proposals(
    client: RedisDep,
    settings: SettingsDep,
    camera: Annotated[str, Query(pattern=CAMERA_ID_PATTERN, description="Camera id.")],
    k: Annotated[int, Query(ge=1, le=50, description="Most frames proposed.")] = 5,
    adjacent: Annotated[
        int, Query(ge=0, le=1000, description="Frames on each side labelled with a proposed frame.")
    ] = 5,
) -> ProposalsOut:
    if not labels.camera_known(client, camera):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera with id '{camera}'")
    found = labels.propose_frames(client, camera, k=k, adjacent=adjacent)
    tolerance_s = settings.analysis.display_interval_s
    items = [
        ProposalOut(
            seq=proposal.seq,
            score=proposal.score,
            ts=proposal.ts,
            start_seq=proposal.start_seq,
            end_seq=proposal.end_seq,
            image_url=_image_url(client, camera, proposal, tolerance_s),
        )
        for proposal in found.proposals
    ]
    return ProposalsOut(
        camera=camera, scored_frames=found.scored_frames, top_frames=found.top_frames, items=items
    )


@router.get("/{label_id}", summary="One label", responses={404: {"description": "Unknown label."}})
def get_feedback(label_id: LabelIdPath, client: RedisDep) -> FeedbackLabel:
    label = labels.get_label(client, label_id)
    if label is None:
        raise _not_found(label_id)
    return label


@router.delete(
    "/{label_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[OperatorDep],
    summary="Delete a label (earlier labels over its frames apply again)",
    responses={404: {"description": "Unknown label."}, 401: {"description": "Operator token needed."}},
)
def delete_feedback(label_id: LabelIdPath, client: RedisDep) -> None:
    if labels.delete_label(client, label_id) is None:
        raise _not_found(label_id)
