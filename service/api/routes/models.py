"""Model versions: which one serves, where each came from, the retraining cycles, rollback."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from service.api.deps import OperatorDep, RedisDep
from workers.bus.schemas import ModelVersion, RetrainCycle
from workers.proc.process import read_heartbeats
from workers.store import model_registry

router = APIRouter(prefix="/api/models", tags=["models"])


class ModelsOut(BaseModel):
    current: str | None = Field(description="The version inference workers serve (None: motion baseline).")
    versions: list[ModelVersion] = Field(description="Every version, newest first, rejected ones included.")
    cycles: list[RetrainCycle] = Field(description="The newest retraining cycles, newest first.")
    retrain: list[dict[str, Any]] = Field(description="State of each live retraining worker.")


class RollbackIn(BaseModel):
    to: str | None = Field(None, max_length=200, description="Version to serve; default: the one before.")


class RollbackOut(BaseModel):
    rolled_back: str
    current: str


@router.get("", summary="Model versions, the current one, and the newest retraining cycles")
def list_models(client: RedisDep, cycles: Annotated[int, Query(ge=0, le=50)] = 10) -> ModelsOut:
    current = model_registry.current_version(client)
    workers = [beat.info | {"worker": beat.id} for beat in read_heartbeats(client) if beat.role == "retrain"]
    return ModelsOut(
        current=current.version if current else None,
        versions=model_registry.list_versions(client),
        cycles=model_registry.recent_cycles(client, cycles),
        retrain=workers,
    )


@router.post(
    "/rollback",
    dependencies=[OperatorDep],
    summary="Serve an earlier version again (default: the one served before the current one)",
    responses={409: {"description": "Nothing to roll back to, or the version cannot serve."}},
)
def rollback(body: RollbackIn, client: RedisDep) -> RollbackOut:
    try:
        old, new = model_registry.rollback(client, body.to)
    except model_registry.RegistryError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return RollbackOut(rolled_back=old.version, current=new.version)
