"""Retraining worker process. Until online mining is enabled it only reports itself alive and idle."""

from __future__ import annotations

from typing import Any

from workers.process import WorkerProcess


class RetrainWorker(WorkerProcess):
    role = "retrain"
    step_interval_s = 5.0

    def step(self) -> None:
        """No mining policy is enabled yet: the detector in service stays as it is."""

    def heartbeat_info(self) -> dict[str, Any]:
        return {"state": "idle", "reason": "online mining and retraining are not enabled in this version"}
