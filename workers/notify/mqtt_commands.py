"""Commands to a camera over MQTT (`<prefix>/<camera>/set`): enable or disable it, snooze it or end its
snooze, through the same store functions as the REST API (PATCH /api/cameras/{id}, /snooze).

Payloads: `ON` / `OFF` (as a Home Assistant switch sends; also `enable` / `disable`, `true` / `false`,
`1` / `0`), or a JSON object with `enabled` (true / false) and/or `snooze_s` (seconds from now, up to 7
days; 0 ends every snooze of the camera). Anything else is refused with a reason, never applied in part.
"""

from __future__ import annotations

import json
from typing import Self

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workers.bus import schemas
from workers.store import cameras, snoozes

ON_PAYLOADS = frozenset({"on", "enable", "enabled", "true", "1"})
OFF_PAYLOADS = frozenset({"off", "disable", "disabled", "false", "0"})
MAX_PAYLOAD = 1024  # bytes: a command is a word or a small object


class CommandError(ValueError):
    """A command that cannot be applied; the message says why (safe to log)."""


class CameraCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, strict=True, description="Enable or disable the camera.")
    snooze_s: float | None = Field(
        None,
        strict=True,
        ge=0,
        le=schemas.MAX_SNOOZE_S,
        description="Snooze the camera's alerts for this many seconds from now; 0 ends its snoozes.",
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.enabled is None and self.snooze_s is None:
            raise ValueError("give enabled and/or snooze_s")
        return self


def parse_command(payload: bytes) -> CameraCommand:
    """The command a payload asks for; raises CommandError with the reason."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"payload over {MAX_PAYLOAD} bytes")
    text = payload.decode(errors="replace").strip()
    if text.lower() in ON_PAYLOADS | OFF_PAYLOADS:
        return CameraCommand(enabled=text.lower() in ON_PAYLOADS)
    if not text.startswith("{"):
        raise CommandError('payload must be ON, OFF or a JSON object such as {"snooze_s": 600}')
    try:
        return CameraCommand.model_validate_json(text)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise CommandError("payload is not valid JSON") from exc
        raise CommandError(cameras.validation_problems(exc) or "invalid command") from exc


def apply_command(
    client: redis.Redis, camera: str, command: CameraCommand, now_ts: float
) -> dict[str, object]:
    """Apply a command to a known camera; returns what changed (for the log). Raises CommandError for an
    unknown camera."""
    try:
        config = cameras.get_camera(client, camera)
    except ValidationError as exc:
        raise CommandError("the camera's stored config is invalid") from exc
    if config is None:
        raise CommandError("no such camera")
    done: dict[str, object] = {}
    if command.enabled is not None and command.enabled != config.enabled:
        if not cameras.replace_camera(client, config.model_copy(update={"enabled": command.enabled})):
            raise CommandError("no such camera")  # removed meanwhile: not added back
        done["enabled"] = command.enabled
    if command.snooze_s == 0:
        done["snooze_ended"] = snoozes.clear_snooze(client, camera)
    elif command.snooze_s is not None:
        snooze = snoozes.snooze(client, camera, now_ts + command.snooze_s, now_ts)
        done["snoozed_until"] = f"{snooze.until_ts:.0f}"
    return done


def describe(payload: bytes) -> str:
    """The payload as it may be logged: printable, short."""
    text = payload[:80].decode(errors="replace")
    return json.dumps(text)[1:-1]
