"""A camera's score normalization state in Redis, written with every batch's results, so that a takeover
(a worker killed, a camera handed over) scores the next frames exactly as an undisturbed worker would.

The state is a window of the camera's recent raw scores (3000 at the defaults, ~58 kB as JSON: those that
entered its statistics), the last few scores it smooths over and its count of outliers (CameraScorer.outlier_excess). Writing it whole with every batch would cost tens of kB per camera per
batch, so each batch appends its raw scores to a log and writes the small smoothing state; the whole
window is checkpointed every CHECKPOINT_S (and the log emptied in the same transaction). Checkpoint plus
log is the window exactly: raw scores are stored as their shortest round-trip repr.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from models.scoring.camera import CameraStream
from workers.bus import keys

CHECKPOINT_S = 10.0
CHECKPOINT_FIELD = "stream"  # the whole CameraStream state, as of the last checkpoint
TAIL_FIELD = "stream_tail"  # the session and smoothing state as of the last batch


def queue_save(
    pipe: redis.client.Pipeline, camera: str, stream: CameraStream, raws: list[float], checkpoint: bool
) -> None:
    """Queue, on a MULTI pipeline, what `raws` (the batch's raw scores of the camera that entered its
    statistics, in order: CameraScorer.learned_last) changed."""
    if checkpoint:  # the whole window only now: a batch's hot path does not copy 3000 floats
        pipe.hset(keys.scorer_state_key(camera), CHECKPOINT_FIELD, json.dumps(stream.state_dict()))
        pipe.delete(keys.scorer_log_key(camera))
    elif raws:
        pipe.rpush(keys.scorer_log_key(camera), *(repr(float(raw)) for raw in raws))
    scorer = stream.scorer
    tail = {
        "session": stream.session,
        "recent_scores": list(scorer.recent_scores),
        "outlier_excess": scorer.outlier_excess,
    }
    pipe.hset(keys.scorer_state_key(camera), TAIL_FIELD, json.dumps(tail))


def has_checkpoint(saved: dict[bytes, bytes]) -> bool:
    """Whether the camera's scorer state hash (`saved`) holds a state to resume from."""
    return CHECKPOINT_FIELD.encode() in saved


def load(client: redis.Redis, camera: str, saved: dict[bytes, bytes], stream: CameraStream) -> int | None:
    """Restores `stream` from the camera's saved state (`saved`: its scorer state hash, with a checkpoint);
    returns the session of the last frame scored."""
    state: dict[str, Any] = json.loads(saved[CHECKPOINT_FIELD.encode()])
    scorer = state.setdefault("scorer", {})
    appended = [float(raw) for raw in client.lrange(keys.scorer_log_key(camera), 0, -1)]
    scorer["recent_raw"] = [*scorer.get("recent_raw", []), *appended]
    if TAIL_FIELD.encode() in saved:
        tail = json.loads(saved[TAIL_FIELD.encode()])
        state["session"] = tail["session"]
        scorer["recent_scores"] = tail["recent_scores"]
        scorer["outlier_excess"] = tail.get("outlier_excess", 0)
    stream.load_state_dict(state)
    return state.get("session")
