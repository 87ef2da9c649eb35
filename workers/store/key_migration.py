"""The one-time move of a single Redis's keys from key layout 1 to the layout now (group hash tags).

Key layout 1 (releases before Redis Cluster support) kept alerts, models, retraining history and feedback
labels under names without group tags, and the cameras' alert and label indexes in the cameras' slots
(keys.LEGACY_SITE_KEYS, keys.LEGACY_CAMERA_KEYS). Every process that opens the shared Redis calls
`migrate_key_layout` before its first read, so an upgraded site keeps all its records.

Each old key is RENAMEd to its new name when the new one does not exist. Where both exist (something wrote
the new name first), hashes, sorted sets and lists are merged into the new key (its entries win) and the old
one deleted; the label counter keeps the larger number; any other key keeps the new value and the old key
is left in place with a warning. One process migrates while holding a lock (SET NX with an expiry); the
others wait for it. A marker (keys.KEY_LAYOUT) records the layout, so later starts cost one GET. A Redis
Cluster is skipped: cluster support came with layout 2, so no layout 1 key can be on one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter

import redis

from workers.bus import keys
from workers.bus.connection import is_cluster

log = logging.getLogger(__name__)

KEY_LAYOUT_VERSION = 2  # 2: site-wide keys in group slots ({_alerts}, ...), the camera indexes with them
LEGACY_COUNTERS = {keys.FEEDBACK_LABEL_COUNTER}  # where both names hold a number, the larger is kept
LOCK_TTL_S = 120  # a migrating process that dies frees the lock after this
WAIT_POLL_S = 0.2
SCAN_BATCH = 1000
MERGED_TYPES = ("hash", "zset", "list")  # where both names exist, these are merged

# Deletes the lock only if this process still holds it (it may have expired and been taken by another).
_RELEASE_LOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def migrate_key_layout(client: redis.Redis, *, wait_s: float = 600.0) -> Counter[str] | None:
    """Bring a single Redis's keys to the layout now, once; what was done ('renamed', 'merged', 'kept')
    when this call migrated, None when there was nothing to do (already done, or a Redis Cluster)."""
    if is_cluster(client) or _layout(client) >= KEY_LAYOUT_VERSION:
        return None
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while not client.set(keys.KEY_LAYOUT_LOCK, token, nx=True, ex=LOCK_TTL_S):
        if _layout(client) >= KEY_LAYOUT_VERSION:
            return None  # another process migrated while this one waited
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Redis key layout migration: another process held {keys.KEY_LAYOUT_LOCK} for {wait_s:.0f} s"
            )
        time.sleep(WAIT_POLL_S)
    try:
        if _layout(client) >= KEY_LAYOUT_VERSION:
            return None
        done = _move_keys(client)
        client.set(keys.KEY_LAYOUT, KEY_LAYOUT_VERSION)
    finally:
        client.eval(_RELEASE_LOCK, 1, keys.KEY_LAYOUT_LOCK, token)
    log.info(
        "Redis key layout %d: %d keys renamed, %d merged, %d old keys kept beside new ones",
        KEY_LAYOUT_VERSION,
        done["renamed"],
        done["merged"],
        done["kept"],
    )
    return done


def _layout(client: redis.Redis) -> int:
    raw = client.get(keys.KEY_LAYOUT)
    return int(raw) if raw else 1


def legacy_key_pairs(client: redis.Redis) -> list[tuple[str, str]]:
    """(old name, new name) of every layout 1 key present: the site-wide ones and, found with SCAN, the
    cameras' alert and label indexes."""
    pairs = [(old, new) for old, new in keys.LEGACY_SITE_KEYS.items() if client.exists(old)]
    for raw in client.scan_iter(match=keys.CAMERA_KEYS_PATTERN, count=SCAN_BATCH):
        key = raw.decode() if isinstance(raw, bytes) else raw
        parsed = keys.parse_camera_key(key)
        if parsed is None:
            continue
        camera, _ = parsed
        kind = key.removeprefix(f"{keys.camera_prefix(camera)}:")
        if kind in keys.LEGACY_CAMERA_KEYS:
            pairs.append((key, keys.LEGACY_CAMERA_KEYS[kind](camera)))
    return pairs


def _move_keys(client: redis.Redis) -> Counter[str]:
    done: Counter[str] = Counter()
    for old, new in legacy_key_pairs(client):
        client.expire(keys.KEY_LAYOUT_LOCK, LOCK_TTL_S)  # still moving: keep the others waiting
        try:
            renamed = client.renamenx(old, new)
        except redis.ResponseError:  # gone since it was found: moved by a process whose lock had expired
            continue
        if renamed:
            done["renamed"] += 1
        elif _merge(client, old, new):
            done["merged"] += 1
        else:
            log.warning(
                "Redis key layout: %s and %s both exist; kept %s, left %s in place", old, new, new, old
            )
            done["kept"] += 1
    return done


def _merge(client: redis.Redis, old: str, new: str) -> bool:
    """Copy the old key's entries into the new one where the new has none (the new key's win) and delete the
    old key, in one transaction; False where the two cannot be merged (different types, streams, a string
    that is not a counter)."""
    kind = _type(client, old)
    mergeable = kind in MERGED_TYPES or (kind == "string" and new in LEGACY_COUNTERS)
    if not mergeable or kind != _type(client, new):
        return False

    def merge(pipe: redis.client.Pipeline) -> None:  # WATCHing both: retried if either changes meanwhile
        if kind == "hash":
            fields = pipe.hgetall(old)
            pipe.multi()
            for field, value in fields.items():
                pipe.hsetnx(new, field, value)
        elif kind == "zset":
            members = pipe.zrange(old, 0, -1, withscores=True)
            pipe.multi()
            pipe.zadd(new, dict(members), nx=True)
        elif kind == "list":  # lists are newest first: the old entries are older, so they go at the end
            entries = pipe.lrange(old, 0, -1)
            pipe.multi()
            pipe.rpush(new, *entries)
        else:
            larger = max(int(pipe.get(old) or 0), int(pipe.get(new) or 0))
            pipe.multi()
            pipe.set(new, larger)
        pipe.delete(old)

    client.transaction(merge, old, new)
    return True


def _type(client: redis.Redis, key: str) -> str:
    kind = client.type(key)
    return kind.decode() if isinstance(kind, bytes) else kind
