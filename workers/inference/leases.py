"""Camera leases: each camera is scored by one inference worker at a time, the owner of its lease key.

The owner renews its leases; a lease that expires (a worker killed) frees the camera for another worker.
A batch's results are written in a MULTI/EXEC that WATCHes the leases of its cameras, so a worker that
lost a camera while scoring writes nothing for it (see workers/inference/worker.py).
"""

from __future__ import annotations

import redis

from workers.bus import keys

_ACQUIRE_LEASE = """
local owner = redis.call('GET', KEYS[1])
if not owner or owner == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return false
"""


_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """Another worker owns a camera of the batch now; its results must not be written."""


class CameraLeases:
    """One worker's side of the leases: take, renew and give back a camera, and guard a batch's write."""

    def __init__(self, client: redis.Redis, worker_id: str) -> None:
        self.worker_id = worker_id
        self._acquire = client.register_script(_ACQUIRE_LEASE)
        self._renew = client.register_script(_RENEW_LEASE)
        self._release = client.register_script(_RELEASE_LEASE)

    def acquire(self, camera: str, ttl_ms: int) -> bool:
        """Takes the camera when it is free (or already ours), for `ttl_ms`."""
        return bool(self._acquire(keys=[keys.lease_key(camera)], args=[self.worker_id, ttl_ms]))

    def renew(self, camera: str, ttl_ms: int) -> bool:
        """False when the camera is no longer ours."""
        return bool(self._renew(keys=[keys.lease_key(camera)], args=[self.worker_id, ttl_ms]))

    def release(self, camera: str) -> None:
        self._release(keys=[keys.lease_key(camera)], args=[self.worker_id])

    def watch_owned(self, pipe: redis.client.Pipeline, cameras: list[str]) -> None:
        """WATCHes the cameras' leases on `pipe` (before its MULTI); raises LeaseLost when one is not ours."""
        lease_keys = [keys.lease_key(camera) for camera in cameras]
        pipe.watch(*lease_keys)
        owners = [pipe.get(key) for key in lease_keys]  # (a cluster pipeline has no MGET)
        lost = [cam for cam, owner in zip(cameras, owners, strict=True) if owner != self.worker_id.encode()]
        if lost:
            raise LeaseLost(f"cameras {', '.join(lost)} are owned by another worker now")
