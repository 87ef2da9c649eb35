"""GET /metrics: Prometheus text built from Redis state at each scrape (a fresh registry, no process state),
so any API replica reports the whole site. Camera sources are shown with their credentials masked."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, get_args

import redis
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.api.deps import RedisDep, SettingsDep
from workers.bus import schemas
from workers.proc.process import HEARTBEAT_PERIODS_ALIVE, read_heartbeats
from workers.proc.redaction import redact
from workers.store import alerts as alert_store
from workers.store import cameras, model_registry, retention
from workers.store.frames import camera_readings

router = APIRouter(tags=["metrics"])

CAMERA_STATES: tuple[str, ...] = get_args(schemas.CameraState)
WORKER_ROLES: tuple[str, ...] = get_args(schemas.WorkerHeartbeat.model_fields["role"].annotation)


class _Families:
    """Metric families under construction, in the order they are first named."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def gauge(self, name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        if name not in self.families:
            self.families[name] = GaugeMetricFamily(name, documentation, labels=list(labels))
        return self.families[name]  # type: ignore[return-value]

    def counter(self, name: str, documentation: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        if name not in self.families:
            self.families[name] = CounterMetricFamily(name, documentation, labels=list(labels))
        return self.families[name]  # type: ignore[return-value]


class _Snapshot:
    """A registry collector that yields metric families built beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _camera_metrics(out: _Families, client: redis.Redis, now: float) -> None:
    configs = {config.id: config for config in cameras.list_cameras(client)}
    statuses = cameras.camera_statuses(client)
    camera_ids = sorted(set(configs) | set(statuses))
    readings = camera_readings(client, camera_ids)
    info = out.gauge(
        "vigil_camera_info",
        "A configured camera (source with credentials masked).",
        ["camera", "source", "enabled"],
    )
    state = out.gauge("vigil_camera_state", "1 for the camera's current ingest state.", ["camera", "state"])
    fps = out.gauge("vigil_camera_fps", "Analysis frames per second the ingest worker writes.", ["camera"])
    frames = out.counter(
        "vigil_camera_frames",
        "Analysis frames the camera has written (continues across restarts, as seq does).",
        ["camera"],
    )
    reconnects = out.counter("vigil_camera_reconnects", "Source reconnects.", ["camera"])
    ingest_dropped = out.counter(
        "vigil_camera_ingest_dropped", "Frames not stored because Redis was unavailable.", ["camera"]
    )
    frame_age = out.gauge(
        "vigil_camera_last_frame_age_seconds",
        "Seconds since the camera's last frame was written.",
        ["camera"],
    )
    buffered = out.gauge(
        "vigil_frames_buffered", "Analysis frames in the camera's buffer (XLEN).", ["camera"]
    )
    pending = out.gauge(
        "vigil_frames_pending", "Frames read by an inference worker and not yet acknowledged.", ["camera"]
    )
    lag = out.gauge(
        "vigil_scoring_lag_seconds",
        "Capture time of the newest frame minus that of the newest scored frame.",
        ["camera"],
    )
    score = out.gauge(
        "vigil_camera_score", "Normalized anomaly score of the newest scored frame.", ["camera"]
    )
    unscored = out.counter(
        "vigil_frames_unscored",
        "Frames that never reached the detector (stream cap or Redis restart).",
        ["camera"],
    )
    alerts = out.counter("vigil_camera_alerts", "Alerts raised on the camera.", ["camera"])
    open_alert = out.gauge("vigil_camera_alert_open", "1 while the camera has an open alert.", ["camera"])
    for camera in camera_ids:
        config, status, reading = configs.get(camera), statuses.get(camera), readings[camera]
        if config is not None:
            info.add_metric([camera, redact(config.source), str(config.enabled).lower()], 1)
        if status is not None:
            for name in CAMERA_STATES:
                state.add_metric([camera, name], 1 if status.state == name else 0)
            fps.add_metric([camera], status.fps)
            frames.add_metric([camera], status.frames)
            reconnects.add_metric([camera], status.reconnects)
            ingest_dropped.add_metric([camera], status.dropped)
            if status.last_frame_ts is not None:
                frame_age.add_metric([camera], max(now - status.last_frame_ts, 0.0))
        buffered.add_metric([camera], reading.frames_buffered)
        pending.add_metric([camera], reading.frames_pending)
        if reading.newest_score is not None:
            score.add_metric([camera], reading.newest_score.score)
            if reading.newest_frame_ts is not None:
                lag.add_metric([camera], max(reading.newest_frame_ts - reading.newest_score.ts, 0.0))
        unscored.add_metric([camera], reading.frames_dropped)
        alerts.add_metric([camera], reading.alerts_total)
        open_alert.add_metric([camera], 1 if reading.alert_open else 0)


def _worker_metrics(out: _Families, client: redis.Redis, now: float, alive_s: float) -> None:
    beats = read_heartbeats(client)
    alive = out.gauge("vigil_workers_alive", "Workers with a recent heartbeat, by role.", ["role"])
    age = out.gauge(
        "vigil_worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat.", ["worker", "role"]
    )
    scored = out.counter("vigil_inference_frames_scored", "Frames the inference worker scored.", ["worker"])
    batches = out.counter("vigil_inference_batches", "Batches the inference worker scored.", ["worker"])
    batch_size = out.gauge(
        "vigil_inference_last_batch_size", "Frames in the worker's last batch.", ["worker"]
    )
    owned = out.gauge("vigil_inference_cameras", "Cameras the inference worker owns.", ["worker"])
    model = out.gauge(
        "vigil_inference_model_info", "The model version the inference worker serves.", ["worker", "model"]
    )
    worker_lag = out.gauge(
        "vigil_inference_lag_seconds",
        "Seconds from capture to written score of the camera's last scored frame (kept while idle).",
        ["worker", "camera"],
    )
    counts = dict.fromkeys(WORKER_ROLES, 0)
    for beat in sorted(beats, key=lambda item: item.id):
        age.add_metric([beat.id, beat.role], max(now - beat.ts, 0.0))
        if now - beat.ts <= alive_s:
            counts[beat.role] = counts.get(beat.role, 0) + 1
        if beat.role != "inference":
            continue
        for name, family in (
            ("frames_scored", scored),
            ("batches", batches),
            ("last_batch_size", batch_size),
        ):
            value = _number(beat.info.get(name))
            if value is not None:
                family.add_metric([beat.id], value)
        owned.add_metric([beat.id], len(beat.info.get("cameras") or []))
        if beat.info.get("model"):
            model.add_metric([beat.id, str(beat.info["model"])], 1)
        for camera, seconds in sorted((beat.info.get("lag_s") or {}).items()):
            if _number(seconds) is not None:
                worker_lag.add_metric([beat.id, camera], float(seconds))
    for role, count in counts.items():
        alive.add_metric([role], count)


def _alert_metrics(out: _Families, client: redis.Redis) -> None:
    total = out.counter("vigil_alerts", "Alerts raised, all cameras (kept durably).")
    alerts, alert_events = alert_store.alert_totals(client)
    total.add_metric([], alerts)
    events = out.counter("vigil_alert_events", "Alert events written (new, update, end).")
    events.add_metric([], alert_events)


def _model_metrics(out: _Families, client: redis.Redis) -> None:
    current = model_registry.current_version(client)
    info = out.gauge(
        "vigil_model_current_info", "The published model version inference serves.", ["model", "origin"]
    )
    moved = out.gauge(
        "vigil_camera_view_moved",
        "1 for a camera whose view moved away from what the served model's place map knows (scored "
        "without it).",
        ["camera"],
    )
    if current is not None:
        info.add_metric([current.version, current.origin], 1)
        for camera in current.place_silenced_cameras:
            moved.add_metric([camera], 1)
    by_status = out.gauge("vigil_model_versions", "Model versions recorded, by status.", ["status"])
    counts: dict[str, int] = {}
    for version in model_registry.list_versions(client):
        counts[version.status] = counts.get(version.status, 0) + 1
    for name, count in sorted(counts.items()):
        by_status.add_metric([name], count)
    cycles = model_registry.recent_cycles(client, 1)
    if not cycles:
        return
    last = cycles[0]
    out.gauge(
        "vigil_retrain_last_cycle_timestamp_seconds", "When the last retraining cycle started."
    ).add_metric([], last.started_ts)
    out.gauge("vigil_retrain_last_cycle_seconds", "Duration of the last retraining cycle.").add_metric(
        [], last.seconds
    )
    out.gauge(
        "vigil_retrain_last_cycle_accepted", "1 when the last cycle's model passed validation."
    ).add_metric([], 1.0 if last.accepted else 0.0)
    mined = out.gauge(
        "vigil_retrain_last_cycle_mined_frames", "Frames the last cycle mined, by set.", ["set"]
    )
    for name, count in sorted(last.mined.items()):
        mined.add_metric([name], count)


def _storage_metrics(out: _Families, client: redis.Redis) -> None:
    """As the ingest worker's last retention sweep measured it (a SCAN of the keyspace: not per scrape)."""
    report = retention.read_storage(client)
    if report is None:
        return
    out.gauge(
        "vigil_storage_measured_timestamp_seconds", "When the storage figures below were measured."
    ).add_metric([], report.ts)
    by_camera = out.gauge(
        "vigil_storage_bytes",
        "Redis memory a camera's data holds, by kind (frames, scores, display, snapshot, error_maps, heat, "
        "other).",
        ["camera", "kind"],
    )
    for camera, kinds in sorted(report.cameras.items()):
        for kind, size in sorted(kinds.items()):
            by_camera.add_metric([camera, kind], size)
    site = out.gauge(
        "vigil_site_storage_bytes",
        "Redis memory the site's records hold (alerts, alert_events, labels).",
        ["kind"],
    )
    for kind, size in sorted(report.site.items()):
        site.add_metric([kind], size)


def build_registry(client: redis.Redis, alive_s: float) -> CollectorRegistry:
    """A registry holding the site's metrics as Redis has them now."""
    now = time.time()
    out = _Families()
    _camera_metrics(out, client, now)
    _worker_metrics(out, client, now, alive_s)
    _alert_metrics(out, client)
    _model_metrics(out, client)
    _storage_metrics(out, client)
    open_total = out.gauge("vigil_alerts_open", "Cameras with an open alert now.")
    open_total.add_metric([], sum(sample.value for sample in out.families["vigil_camera_alert_open"].samples))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(out.families.values()))
    return registry


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics: cameras, frame buffers, scoring lag, inference workers, alerts, storage",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(client: RedisDep, settings: SettingsDep) -> Response:
    registry = build_registry(client, HEARTBEAT_PERIODS_ALIVE * settings.heartbeat_s)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
