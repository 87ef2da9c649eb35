"""A camera's numbering across restarts: its frame count goes on with its seq, and a resent write stores once."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.waiting import wait_for
from tests.workers.conftest import RunIngest, ingest_settings
from tests.workers.ingest.test_worker import state_is
from workers.bus import keys, schemas
from workers.ingest.worker import CameraIngest
from workers.store.cameras import put_camera


def test_a_restarted_camera_counts_on_and_a_resent_frame_is_stored_once(
    run_ingest: RunIngest, redis_client: redis.Redis, redis_url: str, video_clip: Path
) -> None:
    config = schemas.CameraConfig(id="walk", source=str(video_clip))
    put_camera(redis_client, config)
    run_ingest()
    assert wait_for(state_is(redis_client, "walk", "finished"), 20, "the clip").frames == 40
    stream = keys.frames_stream("walk")
    entries = redis_client.xrange(stream)
    assert [entry_id.split(b"-")[1] for entry_id, _ in entries] == [str(seq).encode() for seq in range(40)]

    again = CameraIngest(config, ingest_settings(redis_url), redis_client)  # disabled and enabled again
    again._resume_numbering()
    assert (again.seq, again.status.frames) == (40, 40)

    # the client resending a pipeline whose reply timed out: the frame is there already, nothing changes
    top_id, top_fields = entries[-1]
    resent = redis_client.pipeline(transaction=False)
    resent.xadd(stream, top_fields, id=top_id)
    again._execute(resent, top_id.decode())
    assert redis_client.xlen(stream) == 40
    stale = redis_client.pipeline(transaction=False)  # an id below the top that is not this frame's: an error
    stale.xadd(stream, top_fields, id=entries[0][0])
    with pytest.raises(redis.ResponseError):
        again._execute(stale, entries[-2][0].decode())
