"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.api.deps import RedisDep, SettingsDep
from service.api.schemas import ReadinessOut
from workers.bus.schemas import now
from workers.proc.process import HEARTBEAT_PERIODS_ALIVE
from workers.store import alerts as alert_store
from workers.store import cameras

router = APIRouter(tags=["health"])

# Roles that must have a live worker for alerts to flow.
REQUIRED_ROLES = ("ingest", "inference")
DOWN_STATES = ("reconnecting", "error")


@router.get("/healthz", summary="The API process is serving")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Redis answers and ingest and inference workers are live",
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "Not ready; `missing` says which part."}},
)
def readyz(client: RedisDep, settings: SettingsDep) -> JSONResponse:
    try:
        live = alert_store.live_worker_counts(client, HEARTBEAT_PERIODS_ALIVE * settings.heartbeat_s, now())
        enabled = {config.id for config in cameras.list_cameras(client) if config.enabled}
        statuses = cameras.camera_statuses(client)
    except (RedisConnectionError, RedisTimeoutError):
        body = ReadinessOut(
            ready=False,
            redis=False,
            live_workers={},
            missing=["redis"],
            detail="not ready: Redis is unavailable",
        )
        return JSONResponse(body.model_dump(), status_code=503)
    missing = [role for role in REQUIRED_ROLES if live[role] == 0]
    detail = "not ready: " + "; ".join(f"no live {role} worker" for role in missing) if missing else "ready"
    down = {
        camera: status.state
        for camera, status in sorted(statuses.items())
        if camera in enabled and status.state in DOWN_STATES
    }
    if down:
        detail += "; cameras not streaming: " + ", ".join(f"{cam} ({state})" for cam, state in down.items())
    body = ReadinessOut(
        ready=not missing,
        redis=True,
        live_workers=dict(live),
        missing=missing,
        detail=detail,
        cameras_down=down,
    )
    return JSONResponse(body.model_dump(), status_code=503 if missing else 200)
