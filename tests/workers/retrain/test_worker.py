"""Self-training with a real Redis: model registry, windows read back, a cold start and a cycle published by
the retraining worker, a hot swap under load with every frame scored exactly once, a corrupt model that
never serves."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from models.detector.export import save_detector
from models.detector.fitting import FitConfig, train_detector
from models.detector.runtime import load_detector
from models.detector.streams import DetectorConfig
from models.selftrain import trainer as trainer_module
from models.selftrain.cycle import CycleResult
from models.selftrain.feedback import kind_key
from tests.models.conftest import walker_video, walkers_detector
from tests.waiting import wait_for
from tests.workers.inference.test_worker import (
    HEIGHT,
    WIDTH,
    add_camera,
    frame_message,
    scene,
    scored_seqs,
    settings_for_test,
)
from workers.bus import keys, schemas
from workers.inference.worker import InferenceWorker
from workers.retrain import worker as retrain_worker
from workers.retrain.worker import RetrainWorker, new_scored_frames, read_window, view_check_cameras
from workers.store import model_registry
from workers.store.labels import FeedbackRequest, add_label, delete_label

DETECTOR = DetectorConfig(height=HEIGHT, width=WIDTH, bank_size=64)


def frames_of(count: int, seed: int, anomalous: range = range(0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([scene(seq, rng, square=seq in anomalous) for seq in range(count)])


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small trained detectors (.onnx with .pt beside) and a corrupt .onnx."""
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name, seed in (("a", 0), ("b", 1)):
        trained = train_detector({"v": frames_of(60, seed)}, DETECTOR, {}, FitConfig(seed=seed))
        metadata = {**trained.metadata, "version": f"model-{name}"}
        for suffix in (".onnx", ".pt"):
            save_detector(trained.detector.model, metadata, root / f"{name}{suffix}")
        paths[name] = root / f"{name}.onnx"
    paths["corrupt"] = root / "corrupt.onnx"
    paths["corrupt"].write_bytes(paths["a"].read_bytes()[:5000])
    return paths


def write_scored(
    client: redis.Redis,
    camera: str,
    seqs: range,
    scores: np.ndarray,
    session: int = 0,
    anomalous: range = range(0),
    frames: np.ndarray | None = None,
) -> None:
    """Frames (by default a scene's, uint8 [seqs.stop, H, W]) and their scores as the ingest and inference
    workers write them."""
    frames = frames_of(seqs.stop, 3, anomalous) if frames is None else frames
    height, width = frames.shape[1:]
    for seq, score in zip(seqs, scores, strict=True):
        frame = schemas.FrameMessage(
            camera=camera,
            seq=seq,
            ts=1000 + seq / 10,
            session=session,
            width=width,
            height=height,
            gray=frames[seq].tobytes(),
        )
        entry = client.xadd(keys.frames_stream(camera), frame.to_fields())
        message = schemas.ScoreMessage(
            camera=camera,
            seq=seq,
            ts=frame.ts,
            frame_id=entry.decode(),
            score=float(score),
            raw=float(score),
            model="m",
            anomalous=bool(score > 0.5),
        )
        client.xadd(keys.scores_stream(camera), message.to_fields())


def test_registry_publish_is_conditional_and_rollback_goes_back(
    redis_client: redis.Redis, model_files: dict[str, Path]
) -> None:
    with pytest.raises(model_registry.RegistryError, match="nothing to roll back"):
        model_registry.rollback(redis_client)
    first = model_registry.publish_file(redis_client, model_files["a"])
    assert model_registry.current_version(redis_client).version == first.version == "model-a"
    second = schemas.ModelVersion(
        version="model-b", path=str(model_files["b"]), kind="motion-appearance", parent="model-a"
    )
    assert not model_registry.publish(redis_client, second, expected_current="something-else")
    assert model_registry.publish(redis_client, second, expected_current="model-a")
    model_registry.record_rejected(
        redis_client, schemas.ModelVersion(version="bad", path="", kind="motion-appearance")
    )
    with pytest.raises(model_registry.RegistryError, match="rejected"):
        model_registry.rollback(redis_client, "bad")
    old, new = model_registry.rollback(redis_client)
    assert (old.version, new.version) == ("model-b", "model-a")
    statuses = {v.version: v.status for v in model_registry.list_versions(redis_client)}
    assert statuses == {"model-a": "serving", "model-b": "rolled_back", "bad": "rejected"}
    # a file the site already knows is not made current again by `vigil up --model`
    assert (
        model_registry.publish_file(redis_client, model_files["b"], only_if_new=True).status == "rolled_back"
    )
    assert model_registry.current_version(redis_client).version == "model-a"


def test_read_window_splits_segments_and_carries_labels(redis_client: redis.Redis) -> None:
    add_camera(redis_client, "cam1")
    write_scored(redis_client, "cam1", range(0, 20), np.linspace(0, 1, 20))
    write_scored(redis_client, "cam1", range(25, 40), np.zeros(15), session=1)  # a gap, then a reconnect
    add_label(redis_client, FeedbackRequest(camera="cam1", start_seq=5, end_seq=6, label="abnormal"))
    # a false alarm, and a kind of event the site accepts (normal with a category), partly relabelled
    add_label(redis_client, FeedbackRequest(camera="cam1", start_seq=8, end_seq=9, label="normal"))
    add_label(
        redis_client,
        FeedbackRequest(camera="cam1", start_seq=12, end_seq=15, label="normal", category="cyclist"),
    )
    add_label(redis_client, FeedbackRequest(camera="cam1", start_seq=15, end_seq=15, label="abnormal"))
    window = read_window(redis_client, "cam1", 1000, HEIGHT, WIDTH)
    assert window is not None and len(window.window) == 35 and window.last_seq == 39
    assert new_scored_frames(redis_client, "cam1", cursor=30) == 9
    assert np.unique(window.window.segments).tolist() == [0, 1]
    assert np.flatnonzero(window.window.labels == 1).tolist() == [5, 6, 15]
    assert np.flatnonzero(window.window.labels == 0).tolist() == [8, 9, 12, 13, 14]
    assert window.window.accepted is not None
    assert np.flatnonzero(window.window.accepted).tolist() == [12, 13, 14]


def cold_started(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> RetrainWorker:
    """A retraining worker that cold-started a model on a camera's first 200 frames (a racing square at
    frames 60-79), its first step done."""
    settings = settings_for_test()
    settings.data_dir = tmp_path
    settings.analysis.height, settings.analysis.width = HEIGHT, WIDTH
    retrain = settings.retrain
    retrain.coldstart_frames, retrain.coldstart_min_frames = 100, 30
    retrain.cycle_frames, retrain.window_frames, retrain.min_run = 40, 400, 3
    retrain.localized_alpha = 2.0  # a still scene: frames differ by noise only, keep more of them
    settings.detector.bank_size = 64
    add_camera(redis_client, "cam1")
    status = schemas.CameraStatus(camera="cam1", state="streaming", source_size=(HEIGHT * 4, WIDTH * 4))
    redis_client.hset(keys.CAMERA_STATUS, "cam1", status.model_dump_json())  # as its ingest writes it
    write_scored(redis_client, "cam1", range(200), np.zeros(200), anomalous=range(60, 80))
    worker = RetrainWorker(settings, redis_url, worker_id="r1")
    worker.setup()
    worker.step()
    return worker


def test_retrain_worker_cold_starts_then_runs_a_cycle(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    worker = cold_started(redis_url, redis_client, tmp_path)
    current = model_registry.current_version(redis_client)
    assert current is not None and current.origin == "cold_start" and Path(current.path).is_file()
    first = load_detector(Path(current.path), "cpu").info.metadata
    assert first["detector"]["flow"]["finest_scale"] == 0  # the camera has the pixels: full-resolution flow
    assert Path(current.path).with_suffix(".pt").is_file()
    worker.step()
    assert worker.state == "waiting"  # nothing new since the cold start
    write_scored(redis_client, "cam1", range(200, 300), np.zeros(100))
    worker.step()
    cycles = model_registry.recent_cycles(redis_client)
    assert len(cycles) == 2 and cycles[0].parent == current.version and cycles[0].mined["normal"] > 0
    assert cycles[0].candidate is not None and cycles[0].report["training"]["cells_offered"] > 0
    latest = model_registry.current_version(redis_client)
    versions = {v.version: v for v in model_registry.list_versions(redis_client)}
    if cycles[0].accepted:
        assert latest.version == cycles[0].candidate and latest.origin == "self_training"
    else:  # refused by validation: recorded with the reason, the old model goes on serving
        assert latest.version == current.version and versions[cycles[0].candidate].status == "rejected"
    assert versions[cycles[0].candidate].origin == "self_training"  # accepted or not
    assert int(redis_client.hget(keys.RETRAIN_CURSOR, "cam1")) == 299


def test_a_place_map_that_no_longer_fits_the_view_is_published_silenced(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The camera moved: the model is served with its place map silenced between cycles (every
    `view_check_frames` new frames) and at each cycle, whatever its candidate's verdict, and the inference
    workers load it from the registry like any other."""
    worker = cold_started(redis_url, redis_client, tmp_path)
    current = model_registry.current_version(redis_client)
    assert current is not None
    # every window counts as moved (the tiny model's place evidence never passes its gate)
    configured = retrain_worker.online_config
    monkeypatch.setattr(
        retrain_worker,
        "online_config",
        lambda settings: replace(
            configured(settings), moved_place_z=-1.0, rebase_z=0.0, view_check_frames=10
        ),
    )
    cursor = redis_client.hget(keys.RETRAIN_CURSOR, "cam1")
    write_scored(redis_client, "cam1", range(200, 220), np.zeros(20))  # fewer than a cycle needs (40)
    worker.step()
    cycles = model_registry.recent_cycles(redis_client)
    assert cycles[0].accepted and cycles[0].reason.startswith("the place map silenced")
    latest = model_registry.current_version(redis_client)
    assert latest is not None and latest.version != current.version and latest.parent == current.version
    assert latest.origin == "self_training" and latest.reason.startswith("the place map silenced")
    served = load_detector(Path(latest.path), "cpu")
    clips = np.stack([frames_of(served.info.history + 1, seed=5)] * 2)
    assert not served.stream_maps(clips)[:, served.info.streams.index("place")].any()
    # a check between cycles takes no frame from the next cycle, and waits for new frames
    assert redis_client.hget(keys.RETRAIN_CURSOR, "cam1") == cursor
    worker.step()
    assert model_registry.current_version(redis_client).version == latest.version
    assert worker.state == "waiting"
    write_scored(redis_client, "cam1", range(220, 260), np.zeros(40))
    worker.step()  # a cycle, which checks the view first and publishes what it found before mining
    cycle, silenced = model_registry.recent_cycles(redis_client)[:2]
    assert silenced.reason.startswith("the place map silenced") and silenced.cameras == []
    assert cycle.cameras == ["cam1"] and not cycle.reason.startswith("the place map silenced")
    assert int(redis_client.hget(keys.RETRAIN_CURSOR, "cam1")) == 259


def walker_cameras(
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cycle_frames: int,
    lobby_moved: bool,
) -> tuple[RetrainWorker, schemas.ModelVersion]:
    """A retraining worker set up over a published model with a place map of the walkers' path, serving
    two cameras: on `gate` the walker keeps to the path; on `lobby` too, unless it was moved and its
    walker crosses the lawn."""
    walker_model = walkers_detector()
    settings = settings_for_test()
    settings.data_dir = tmp_path
    settings.retrain.cycle_frames = cycle_frames
    height, width = walker_model.info.height, walker_model.info.width
    settings.analysis.height, settings.analysis.width = height, width
    for suffix in (".onnx", ".pt"):
        save_detector(walker_model.model, walker_model.info.metadata, tmp_path / f"walkers{suffix}")
    published = schemas.ModelVersion(
        version=walker_model.info.version, path=str(tmp_path / "walkers.onnx"), kind="motion-place"
    )
    assert model_registry.publish(redis_client, published, None)
    rng = np.random.default_rng(2)
    path = width * 0.25 + 3
    for camera, column in (("gate", path), ("lobby", width * 0.8 if lobby_moved else path)):
        add_camera(redis_client, camera)
        write_scored(redis_client, camera, range(40), np.zeros(40), frames=walker_video(40, column, rng))
    configured = retrain_worker.online_config
    monkeypatch.setattr(  # every 2nd frame read: the 20 a camera needs to be judged alone
        retrain_worker,
        "online_config",
        lambda settings: replace(configured(settings), rebase_stride=2, view_check_frames=40),
    )
    worker = RetrainWorker(settings, redis_url, worker_id="r1")
    worker.setup()
    return worker, published


def record_mining_and_scoring(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[list[str]], list[int]]:
    """What the cameras' endpoints show as moved each time a cycle's mining starts, and how many frames
    each pass of the view check scores (models/selftrain/trainer's run_cycle and sampled_patch_scores)."""
    served_at_mining: list[list[str]] = []
    scored: list[int] = []
    run_cycle, sampled_patch_scores = trainer_module.run_cycle, trainer_module.sampled_patch_scores

    def recorded_cycle(*args: Any, **kwargs: Any) -> CycleResult:
        current = model_registry.current_version(redis_client)
        served_at_mining.append(current.place_silenced_cameras if current is not None else [])
        return run_cycle(*args, **kwargs)

    def recorded_scoring(*args: Any, **kwargs: Any) -> np.ndarray:
        patch = sampled_patch_scores(*args, **kwargs)
        scored.append(len(patch))
        return patch

    monkeypatch.setattr(trainer_module, "run_cycle", recorded_cycle)
    monkeypatch.setattr(trainer_module, "sampled_patch_scores", recorded_scoring)
    return served_at_mining, scored


@pytest.mark.parametrize("cycle_due", [False, True])
def test_one_camera_of_two_that_moved_is_named_and_the_model_kept_for_the_other(
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cycle_due: bool,
) -> None:
    """Half the joined window: only the moved camera's own frames show it; the map is published silenced
    with the camera named, between cycles, or, where a cycle is due, before the cycle's mining and
    adaptation begin."""
    worker, published = walker_cameras(
        redis_client, redis_url, tmp_path, monkeypatch, 80 if cycle_due else 1000, lobby_moved=True
    )
    served_at_mining, scored = record_mining_and_scoring(redis_client, monkeypatch)
    worker.step()  # the view is checked: between cycles, or first in the cycle that is due
    assert served_at_mining == ([["lobby"]] if cycle_due else [])
    assert len(scored) == 1  # the view check's sampled frames, scored once
    silenced = [
        v for v in model_registry.list_versions(redis_client) if "for camera lobby: even its own" in v.reason
    ]
    assert len(silenced) == 1 and silenced[0].parent == published.version, worker.reason
    assert silenced[0].place_silenced_cameras == ["lobby"]  # what the cameras' endpoints show
    latest = model_registry.current_version(redis_client)  # the cycle's, where it was accepted
    assert latest is not None and latest.place_silenced_cameras == ["lobby"]
    if cycle_due and latest.version != silenced[0].version:
        assert latest.parent == silenced[0].version  # the cycle's candidate descends from the silenced
    served = load_detector(Path(latest.path), "cpu")
    assert served.info.metadata["place_silenced_cameras"] == ["lobby"]


def test_a_due_cycle_scores_the_view_check_s_frames_once(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both cameras' walkers keep to the path: the cycle's view check and its check for a model that
    does not know the site read one pass of the sampled frames."""
    worker, published = walker_cameras(redis_client, redis_url, tmp_path, monkeypatch, 80, lobby_moved=False)
    served_at_mining, scored = record_mining_and_scoring(redis_client, monkeypatch)
    worker.step()
    assert served_at_mining == [[]] and len(scored) == 1
    assert not any("place map silenced" in v.reason for v in model_registry.list_versions(redis_client))
    assert model_registry.recent_cycles(redis_client)[0].parent == published.version


def test_a_kind_the_site_accepts_is_served_in_the_next_cycle_s_model(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    worker = cold_started(redis_url, redis_client, tmp_path)
    first = model_registry.current_version(redis_client)
    # the operator says the racing square is a kind of event this site accepts
    add_label(
        redis_client,
        FeedbackRequest(camera="cam1", start_seq=60, end_seq=79, label="normal", category="racer"),
    )
    write_scored(redis_client, "cam1", range(200, 300), np.zeros(100))
    worker.step()
    cycle = model_registry.recent_cycles(redis_client)[0]
    latest = model_registry.current_version(redis_client)
    # served whether the cycle's adaptation was accepted (with it) or refused (the exception alone)
    assert cycle.accepted and latest.version != first.version and latest.origin == "self_training"
    served = load_detector(Path(latest.path), "cpu").info.metadata
    assert served["detector"]["exception_cells"] > 0
    learned = cycle.report.get("accepted_kinds_only") or cycle.report["training"]["labelled_normal"]
    assert learned["accepted_frames"] == 20 and "cells_added" not in learned
    assert window_kinds(redis_client) == {kind_key("racer")}
    worker.step()  # nothing changed: nothing withdrawn, no new model
    assert model_registry.current_version(redis_client).version == latest.version


def window_kinds(client: redis.Redis) -> set[int]:
    window = read_window(client, "cam1", 1000, HEIGHT, WIDTH)
    assert window is not None and window.window.kinds is not None
    return set(window.window.kinds.tolist()) - {0}


def test_a_kind_an_operator_takes_back_leaves_the_served_model_at_once(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    worker = cold_started(redis_url, redis_client, tmp_path)
    accepted, _ = add_label(
        redis_client,
        FeedbackRequest(camera="cam1", start_seq=60, end_seq=79, label="normal", category="racer"),
    )
    write_scored(redis_client, "cam1", range(200, 300), np.zeros(100))
    worker.step()
    with_kind = model_registry.current_version(redis_client)
    assert load_detector(Path(with_kind.path), "cpu").info.metadata["detector"]["exception_cells"] > 0
    delete_label(redis_client, accepted.id)  # the operator takes it back: no cycle, no rollback needed
    worker.step()
    latest = model_registry.current_version(redis_client)
    assert latest.origin == "feedback" and latest.parent == with_kind.version
    assert latest.metrics["withdrawn_kinds"]["cells_kept"] == 0
    assert load_detector(Path(latest.path), "cpu").info.metadata["detector"]["exception_cells"] == 0
    assert worker.trainer is not None and worker.trainer.model is not None
    assert worker.trainer.model.exception is None
    assert "taken out of the per-cell exception" in model_registry.recent_cycles(redis_client)[0].reason


def test_hot_swap_under_load_scores_every_frame_once_and_a_corrupt_model_never_serves(
    redis_url: str, redis_client: redis.Redis, model_files: dict[str, Path]
) -> None:
    model_registry.publish_file(redis_client, model_files["a"])
    add_camera(redis_client, "cam1")
    worker = InferenceWorker(settings_for_test(), redis_url, worker_id="w1")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    frames = frames_of(400, 5, anomalous=range(150, 200))
    stop = threading.Event()

    def produce() -> None:
        for seq, gray in enumerate(frames):
            message = frame_message("cam1", seq, gray)
            redis_client.xadd(keys.frames_stream("cam1"), message.to_fields())
            time.sleep(0.004)
            if stop.is_set():
                return

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_for(lambda: len(scored_seqs(redis_client, "cam1")) >= 100)
        model_registry.publish_file(redis_client, model_files["b"])  # while frames keep coming
        wait_for(lambda: len(scored_seqs(redis_client, "cam1")) >= 250)
        # the camera's statistics went on across the swap: every frame scored so far is remembered, but
        # for the racing square's (frames 150-199: outliers of its statistics, CameraScorer.learn_below_z)
        scored = len(scored_seqs(redis_client, "cam1"))
        assert len(worker.slots["cam1"].stream.scorer.recent_raw) >= scored - 50 - 10
        # a published version whose file is broken: refused by the worker, the serving one goes on
        broken = schemas.ModelVersion(
            version="broken", path=str(model_files["corrupt"]), kind="motion-appearance"
        )
        assert model_registry.publish(redis_client, broken, expected_current="model-b")
        producer.join(30)
        wait_for(lambda: len(scored_seqs(redis_client, "cam1")) >= 400, timeout_s=30)
    finally:
        stop.set()
        worker.stop()
        thread.join(10)
    messages = [
        schemas.ScoreMessage.from_fields(f) for _, f in redis_client.xrange(keys.scores_stream("cam1"))
    ]
    assert [m.seq for m in messages] == list(range(400))  # none skipped, none twice
    models = [m.model for m in messages]
    switch = models.index("model-b")
    assert set(models[:switch]) == {"model-a"} and set(models[switch:]) == {"model-b"}
    assert 100 <= switch < 250


def test_retraining_process_yields_the_cpu_to_inference() -> None:
    """`vigil retrain` lowers its own priority by VIGIL_RETRAIN__NICE (in a child: the test process keeps its)."""
    probe = (
        "import os; from workers.retrain.worker import yield_cpu_to_inference; from workers.config import Settings; "
        "before = os.nice(0); yield_cpu_to_inference(Settings()); print(os.nice(0) - before)"
    )
    env = {**os.environ, "VIGIL_RETRAIN__NICE": "7"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "7"


def test_a_large_site_s_cameras_are_checked_in_turns() -> None:
    """A check between cycles reads what a cycle's window holds: a site of 4 cameras whole, one of 16 in
    two groups of 8 and one of 64 in five, every camera in its turn; never a group of one camera."""
    site = [f"cam{index:02d}" for index in range(64)]
    assert view_check_cameras(site[:4], 0, 200, 3000) == site[:4]
    assert [view_check_cameras(site[:16], turn, 200, 3000) for turn in range(3)] == [
        site[:8],
        site[8:16],
        site[:8],
    ]
    groups = [view_check_cameras(site, turn, 200, 3000) for turn in range(5)]
    assert [len(group) for group in groups] == [13, 13, 13, 13, 12] and [
        c for group in groups for c in group
    ] == site
    assert view_check_cameras(site[:3], 1, 200, 200) == site[:3]  # two cameras a group at least
