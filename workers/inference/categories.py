"""Event categories of alerts: the retraining worker describes each new alert by its peak frame, and once
operators have given categories to alerts of two kinds or more, predicts the category of every other one
(models/selftrain/categories.py). The API shows an operator's label first, else the prediction."""

from __future__ import annotations

import logging

import numpy as np
import redis

from models.detector.runtime import TorchDetector
from models.detector.scores import anomaly_maps
from models.selftrain.categories import alert_descriptor, fit_categories
from workers.bus import keys, schemas
from workers.store.labels import list_labels

log = logging.getLogger(__name__)

RECENT_ALERTS = 200  # newest alerts looked at each time
SCORES_SCANNED = 5000  # newest score entries searched for an alert's peak frame
LABELS_SCANNED = 500


def _peak_clip(
    client: redis.Redis, alert: schemas.Alert, history: int, size: tuple[int, int]
) -> np.ndarray | None:
    """The peak frame of an alert with its past frames, while the camera's buffer still has them."""

    frame_id = None
    for _, fields in client.xrevrange(keys.scores_stream(alert.camera), count=SCORES_SCANNED):
        message = schemas.ScoreMessage.from_fields(fields)
        if message.seq == alert.peak_seq:
            frame_id = message.frame_id
            break
    if frame_id is None:
        return None
    entries = client.xrevrange(keys.frames_stream(alert.camera), max=frame_id, count=history + 1)
    if not entries or entries[0][0].decode() != frame_id:
        return None
    frames = []
    for _, fields in reversed(entries):
        frames.append(schemas.FrameMessage.from_fields(fields).array(size))
    frames = [frames[0]] * (history + 1 - len(frames)) + frames  # a stream start: padded as served
    return np.stack(frames)


def describe_new_alerts(client: redis.Redis, detector: TorchDetector) -> int:
    """Descriptors of the newest alerts that have none yet (or one from another model). Returns how many
    were added."""
    if detector.model.appearance is None:
        return 0
    info = detector.info
    ids = [member.decode() for member in client.zrevrange(keys.ALERTS_BY_TIME, 0, RECENT_ALERTS - 1)]
    if not ids:
        return 0
    known = client.hmget(keys.ALERT_DESCRIPTORS, ids)
    added = 0
    for alert_id, raw_descriptor, raw_alert in zip(ids, known, client.hmget(keys.ALERTS, ids), strict=True):
        if raw_alert is None or (
            raw_descriptor is not None
            and schemas.AlertDescriptor.model_validate_json(raw_descriptor).model == info.version
        ):
            continue
        alert = schemas.Alert.model_validate_json(raw_alert)
        clip = _peak_clip(client, alert, info.history, (info.height, info.width))
        if clip is None:
            continue  # its frames have left the buffer
        anomaly = anomaly_maps(detector, detector.served_maps(clip[None], [alert.camera]), [alert.camera])[0]
        vector = alert_descriptor(detector.model, clip, anomaly)
        descriptor = schemas.AlertDescriptor(model=info.version, vector=[float(v) for v in vector])
        client.hset(keys.ALERT_DESCRIPTORS, alert_id, descriptor.model_dump_json())
        added += 1
    return added


def categorize_alerts(client: redis.Redis, model_version: str) -> int:
    """Operators' categories for their labelled alerts, predictions for the others described by the model
    `model_version` (descriptors of different models are not comparable: only its own are learned from).
    Returns how many alerts got a (new) category."""
    labelled: dict[str, str] = {}
    for label in reversed(list_labels(client, limit=LABELS_SCANNED, label="abnormal").labels):
        if label.alert_id is not None and label.category:
            labelled[label.alert_id] = label.category  # oldest first: the latest label wins
    descriptors = {
        key.decode(): schemas.AlertDescriptor.model_validate_json(raw)
        for key, raw in client.hgetall(keys.ALERT_DESCRIPTORS).items()
    }
    examples = [(alert_id, labelled[alert_id]) for alert_id in labelled if alert_id in descriptors]
    usable = [(a, c) for a, c in examples if descriptors[a].model == model_version]
    model = (
        fit_categories(np.array([descriptors[a].vector for a, _ in usable]), [c for _, c in usable])
        if usable
        else None
    )
    written = 0
    with client.pipeline(transaction=False) as pipe:
        for alert_id, category in labelled.items():
            pipe.hset(
                keys.ALERT_CATEGORIES,
                alert_id,
                schemas.AlertCategory(category=category, confidence=1.0, source="operator").model_dump_json(),
            )
            written += 1
        if model is not None:
            for alert_id, descriptor in descriptors.items():
                if alert_id in labelled or descriptor.model != model_version:
                    continue
                category, confidence = model.predict(np.array(descriptor.vector, dtype=np.float32))
                prediction = schemas.AlertCategory(
                    category=category, confidence=confidence, source="predicted", examples=len(usable)
                )
                pipe.hset(keys.ALERT_CATEGORIES, alert_id, prediction.model_dump_json())
                written += 1
        pipe.execute()
    if model is not None:
        log.info(
            "categories of %d alerts predicted from %d labelled ones", written - len(labelled), len(usable)
        )
    return written
