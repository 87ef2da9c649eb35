"""Every Redis key, stream and channel name (the messages stored there: schemas.py).

Nothing else in the project spells a key. Per-camera keys carry the camera id as a Redis Cluster
hash tag (`{cam}`) so that one camera's frames, scores and state live in one slot. Site-wide keys written
together in one transaction share a group tag (`{_alerts}`, `{_models}`, `{_retrain}`, `{_feedback}`): a
camera id cannot start with `_` (schemas.CAMERA_ID_PATTERN), so no camera's slot is tied to a group's.
"""

from __future__ import annotations

import re

PREFIX = "vigil"

INFERENCE_GROUP = "inference"
MQTT_GROUP = "mqtt"  # consumer group on ALERT_EVENTS delivering to the MQTT broker


def webhook_group(url_id: str) -> str:
    """Consumer group on ALERT_EVENTS delivering to one webhook URL (each URL gets every event once)."""
    return f"webhook:{url_id}"


# ---------------------------------------------------------------- key names
def camera_prefix(camera: str) -> str:
    return f"{PREFIX}:cam:{{{camera}}}"


def _group(name: str) -> str:
    """The prefix of a group of site-wide keys that share one cluster slot (written in one transaction)."""
    return f"{PREFIX}:{{_{name}}}"


ALERTS_GROUP = _group("alerts")
MODELS_GROUP = _group("models")
RETRAIN_GROUP = _group("retrain")
FEEDBACK_GROUP = _group("feedback")


def frames_stream(camera: str) -> str:
    """Analysis frames (downscaled grayscale), capped by seconds and bytes."""
    return f"{camera_prefix(camera)}:frames"


def scores_stream(camera: str) -> str:
    """One entry per scored frame."""
    return f"{camera_prefix(camera)}:scores"


def error_map_key(camera: str, seq: int) -> str:
    """A frame's quantized, compressed pixel error map (kept with a TTL)."""
    return f"{camera_prefix(camera)}:errmap:{seq}"


def heat_bucket_key(camera: str, minute: int) -> str:
    """Sum of the error maps of a camera's anomalous frames in one minute (minute = epoch seconds // 60)."""
    return f"{camera_prefix(camera)}:heat:{minute}"


def snapshot_key(camera: str) -> str:
    """The latest display JPEG of a camera."""
    return f"{camera_prefix(camera)}:snapshot"


def display_stream(camera: str) -> str:
    """Display JPEGs at a low rate, for alert clips."""
    return f"{camera_prefix(camera)}:display"


def scorer_log_key(camera: str) -> str:
    """List of the raw scores the camera's scorer took since the `stream` checkpoint of its scorer state,
    oldest first (workers/inference/scorer_state.py)."""
    return f"{camera_prefix(camera)}:scorer_log"


def scorer_state_key(camera: str) -> str:
    """Hash of the inference worker's per-camera state: `tracker` (alert hysteresis, every batch), `stream` (score normalization: a checkpoint every few seconds, with `stream_tail` and scorer_log_key each batch), `frames_dropped` (frames never scored)."""
    return f"{camera_prefix(camera)}:scorer_state"


def lease_key(camera: str) -> str:
    """Which inference worker owns a camera now (expires when the worker stops renewing it)."""
    return f"{camera_prefix(camera)}:lease"


CAMERAS = f"{PREFIX}:cameras"  # hash: camera id -> CameraConfig JSON
CAMERA_STATUS = f"{PREFIX}:camera_status"  # hash: camera id -> CameraStatus JSON
WORKERS = f"{PREFIX}:workers"  # hash: worker id -> WorkerHeartbeat JSON
ALERTS = f"{ALERTS_GROUP}:alerts"  # hash: alert id -> Alert JSON (durable)
ALERTS_BY_TIME = f"{ALERTS_GROUP}:alerts:by_time"  # zset: alert id scored by start time (ms)
ALERT_EVENTS = f"{ALERTS_GROUP}:alert_events"  # stream of AlertEvent, never trimmed by frame pressure
MODELS = f"{MODELS_GROUP}:models"  # hash: version -> ModelVersion JSON
CURRENT_MODEL = f"{MODELS_GROUP}:models:current"  # string: version id now serving
MODEL_HISTORY = f"{MODELS_GROUP}:models:history"  # list: versions made current, newest first (for rollback)
RETRAIN_CYCLES = f"{RETRAIN_GROUP}:retrain:cycles"  # list: RetrainCycle JSON, newest first, capped
RETRAIN_CURSOR = f"{RETRAIN_GROUP}:retrain:cursor"  # hash: camera id -> last frame seq a cycle covered
STORAGE = f"{PREFIX}:storage"  # string: StorageReport JSON, rewritten by each retention sweep

CAMERA_KEYS_PATTERN = f"{camera_prefix('*')}:*"  # SCAN pattern of every per-camera key


def parse_camera_key(key: str) -> tuple[str, str] | None:
    """(camera id, the key's kind: `frames`, `errmap`, `heat`, ...) of a per-camera key, else None."""
    match = re.fullmatch(rf"{PREFIX}:cam:\{{([^}}]+)\}}:([^:]+).*", key)
    return (match.group(1), match.group(2)) if match else None


def alerts_by_camera(camera: str) -> str:
    """Zset of one camera's alert ids scored by start time (ms); in the alerts' slot, written with them."""
    return f"{ALERTS_GROUP}:cam:{camera}:alerts"


def alert_outbox(camera: str) -> str:
    """Redis Cluster: stream of the camera's alert events written with its scores, not yet published to ALERTS / ALERT_EVENTS (another slot); drained in order by workers/inference/alert_outbox.py."""
    return f"{camera_prefix(camera)}:alert_outbox"


def model_blob_key(version: str) -> str:
    """A published model's file bytes (string), so inference hosts need no shared filesystem; the slot follows the version, so large blobs spread over the cluster's nodes."""
    return f"{PREFIX}:model_blob:{{{version}}}"


# ---- event categories (written by the retraining worker, merged into alerts by the API)
ALERT_DESCRIPTORS = f"{ALERTS_GROUP}:alerts:descriptors"  # hash: alert id -> AlertDescriptor JSON
ALERT_CATEGORIES = f"{ALERTS_GROUP}:alerts:categories"  # hash: alert id -> AlertCategory JSON

# ---- operator feedback labels. A label says whether an inclusive range of a camera's frames (by seq) is normal or abnormal. Labels are
# durable and never trimmed; ids are increasing numbers, so a larger id is a later label (the later wins).
FEEDBACK_LABELS = f"{FEEDBACK_GROUP}:feedback:labels"  # hash: label id -> FeedbackLabel JSON
FEEDBACK_LABELS_BY_ID = f"{FEEDBACK_GROUP}:feedback:labels:by_id"  # zset: label id scored by its number
FEEDBACK_LABEL_COUNTER = f"{FEEDBACK_GROUP}:feedback:labels:counter"  # string: the last label number


def feedback_labels_by_camera(camera: str) -> str:
    """Zset of one camera's label ids scored by their number (in the labels' slot, written with them)."""
    return f"{FEEDBACK_GROUP}:cam:{camera}:feedback:labels"


def feedback_ranges(camera: str) -> str:
    """Hash of one camera's frame ranges ('start-end') -> the newest label id over exactly that range."""
    return f"{FEEDBACK_GROUP}:cam:{camera}:feedback:ranges"


DROPPED_FIELD = "frames_dropped"  # of scorer_state_key: frames of the camera that were never scored
SNOOZES = f"{PREFIX}:snoozes"  # hash: camera id -> Snooze JSON (what of the camera is snoozed, until when)

KEY_LAYOUT = f"{PREFIX}:key_layout"  # string: the key layout version of a single Redis (workers/store/key_migration.py)
KEY_LAYOUT_LOCK = f"{PREFIX}:key_layout:lock"  # string: held (SET NX EX) by the process moving keys
LEGACY_SITE_KEYS = {  # the names of key layout 1 (before Redis Cluster support) -> the names now
    f"{PREFIX}:alerts": ALERTS,
    f"{PREFIX}:alerts:by_time": ALERTS_BY_TIME,
    f"{PREFIX}:alert_events": ALERT_EVENTS,
    f"{PREFIX}:alerts:descriptors": ALERT_DESCRIPTORS,
    f"{PREFIX}:alerts:categories": ALERT_CATEGORIES,
    f"{PREFIX}:models": MODELS,
    f"{PREFIX}:models:current": CURRENT_MODEL,
    f"{PREFIX}:models:history": MODEL_HISTORY,
    f"{PREFIX}:retrain:cycles": RETRAIN_CYCLES,
    f"{PREFIX}:retrain:cursor": RETRAIN_CURSOR,
    f"{PREFIX}:feedback:labels": FEEDBACK_LABELS,
    f"{PREFIX}:feedback:labels:by_id": FEEDBACK_LABELS_BY_ID,
    f"{PREFIX}:feedback:labels:counter": FEEDBACK_LABEL_COUNTER,
}
LEGACY_CAMERA_KEYS = {  # key layout 1 per-camera keys `vigil:cam:{<camera>}:<kind>` -> the name now, by kind
    "alerts": alerts_by_camera,
    "feedback:labels": feedback_labels_by_camera,
    "feedback:ranges": feedback_ranges,
}
