"""Self-training cycles on generated footage: window clips, mining with labels, adaptation of every stream,
the validation gate (a NaN model is refused), model files written and loaded back, a cold start."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.detector.base import PLACE_SILENCED_CAMERAS, DetectorInfo
from models.detector.export import model_metadata, save_detector
from models.detector.fitting import FitConfig, train_detector
from models.detector.motion import MotionBaseline
from models.detector.predictor_training import TrainConfig
from models.detector.runtime import InvalidModelError, TorchDetector, load_detector
from models.detector.scores import ScoreCalibration
from models.detector.streams import DetectorConfig
from models.evaluation.online import stream_online
from models.scoring.camera import CameraStream
from models.selftrain.adaptation import adapt_appearance, adapt_motion, refit_statistics
from models.selftrain.config import (
    LabelLearning,
    MinedSet,
    MiningParams,
    OnlineConfig,
    SelfTrainConfig,
    Window,
)
from models.selftrain.cycle import run_cycle
from models.selftrain.feedback import kind_key
from models.selftrain.mining import mine, window_evidence
from models.selftrain.trainer import SelfTrainer, concat_windows
from models.selftrain.validation import Validation, clip_raw_scores, model_z, validate
from tests.models.conftest import (
    HEIGHT,
    TINY_DETECTOR,
    TINY_PREDICTING,
    WIDTH,
    synthetic_video,
    walker_video,
    walkers_detector,
)

CONFIG = SelfTrainConfig(
    mining=MiningParams(eta_s=0.8, min_run=3),
    steps=15,
    batch_size=8,
    min_normal_frames=5,
    localized_alpha=2.0,
)


def fitted(config: DetectorConfig) -> TorchDetector:
    rng = np.random.default_rng(0)
    videos = {"a": synthetic_video(40, rng), "b": synthetic_video(40, rng)}
    fit = FitConfig(train=TrainConfig(minutes=None, epochs=6, batch_size=8))
    return train_detector(videos, config, {}, fit).detector


@pytest.fixture(scope="module")
def tiny_model() -> TorchDetector:
    return fitted(TINY_DETECTOR)


def two_cameras(seed: int = 3) -> Window:
    """Two 'cameras' with a racing square in the second half of each."""
    windows = []
    for offset in range(2):
        frames = synthetic_video(60, np.random.default_rng(seed + offset), anomaly=(35, 59))
        windows.append(Window(frames, np.zeros(60, dtype=int)))
    return concat_windows(windows)


def test_window_clips_pad_like_the_camera_stream() -> None:
    frames = np.arange(7, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    window = Window(frames, np.array([0, 0, 0, 1, 1, 1, 1]))
    expected = []
    for segment in ([0, 1, 2], [3, 4, 5, 6]):  # a new segment: history restarts, as after a reconnect
        stream = CameraStream(DetectorInfo(kind="test", version="t", height=2, width=2, history=2))
        expected += [stream.push(frames[i]) for i in segment]
    np.testing.assert_array_equal(window.clips(np.arange(7), history=2), np.stack(expected))


def test_labels_override_mining_and_labelled_normals_are_learned_whole(tiny_model: TorchDetector) -> None:
    window = two_cameras()
    evidence = window_evidence(tiny_model, window)
    assert evidence.maps.shape == (len(window), HEIGHT // 2, WIDTH // 2) and evidence.scores.shape == (
        len(window),
    )
    plain = mine(window, evidence, CONFIG)
    labels = np.full(len(window), -1)
    labelled_normal = np.flatnonzero(plain.abnormal)[:4]
    labels[labelled_normal] = 0  # the operator says these alarms were false
    labels[:2] = 1  # and that the first frames were abnormal
    mined = mine(replace(window, labels=labels), evidence, CONFIG)
    assert not mined.abnormal[labelled_normal].any() and mined.normal[labelled_normal].all()
    assert mined.abnormal[:2].all() and not mined.normal[:2].any()
    rows = np.searchsorted(mined.train, labelled_normal)
    assert (mined.masks[rows] == 1).all()
    held_out = np.r_[mined.calibration, mined.validation]
    assert not np.isin(held_out, mined.train).any() and mined.abnormal[mined.train].any()
    abnormal_rows = np.flatnonzero(mined.abnormal[mined.train])
    assert (mined.masks[abnormal_rows] == 0).any()  # the anomaly itself is not learned


def test_a_camera_whose_level_moved_is_mined_on_its_own_scale(tiny_model: TorchDetector) -> None:
    frames = synthetic_video(2500, np.random.default_rng(5))
    window = Window(frames, np.zeros(len(frames), dtype=int))
    calibration = tiny_model.info.metadata["calibration"]
    # as if the camera had been moved or re-lit: its normal footage scores 12 spreads above the calibration,
    # outliers that teach the camera's statistics once they outnumber its normal frames by relearn_after
    moved = {**calibration, "median": calibration["median"] - 12 * calibration["scale"]}
    relocated = TorchDetector(tiny_model.model, {**tiny_model.info.metadata, "calibration": moved})
    evidence = window_evidence(relocated, window)
    assert (evidence.scores[:50] >= CONFIG.mining.eta_s).all()  # at first, the calibration's view
    assert (evidence.scores[-500:] < CONFIG.mining.eta_s).mean() > 0.5  # then more and more its own level
    assert mine(window, evidence, CONFIG).normal[-500:].any()


@pytest.mark.parametrize("streams", ["motion+appearance", "all streams"])
def test_cycle_adapts_validates_and_reports(tiny_model: TorchDetector, streams: str) -> None:
    current = tiny_model if streams == "motion+appearance" else fitted(TINY_PREDICTING)
    window = two_cameras()
    before = current.model.appearance.cells.clone()
    result = run_cycle(current.model, current.info.metadata, current, window, [window.frames], CONFIG)
    report = result.report
    assert report["mined"]["normal"] > 0 and report["mined"]["abnormal"] > 0
    assert report["training"]["cells_offered"] > 0
    if streams == "all streams":
        assert report["training"]["prediction"]["steps"] == CONFIG.steps
    assert {"current_separation", "candidate_abnormal_separation"} <= set(report["validation"])
    assert torch.equal(current.model.appearance.cells, before)  # the model in service is never changed
    if result.accepted:
        assert result.metadata is not None and result.metadata["parent"] == current.info.version
        assert set(result.metadata["stream_stats"]) == set(current.info.streams)


def test_a_cycle_learns_the_frames_labelled_normal_whole(tiny_model: TorchDetector) -> None:
    window = two_cameras()
    labels = np.full(len(window), -1)
    labels[40:50] = 0  # the racing square of the first camera, which an operator marked normal
    result = run_cycle(
        tiny_model.model, tiny_model.info.metadata, tiny_model, replace(window, labels=labels), [], CONFIG
    )
    learned = result.report["training"]["labelled_normal"]  # cells the mining's memory update left uncovered
    assert learned["frames"] == 10 and learned["cells_added"] >= 0 and "motion_pixels_raised" not in learned
    if result.model is not None:  # an accepted candidate remembers them
        assert result.model.config.bank_size == TINY_DETECTOR.bank_size + learned["cells_added"]


def test_a_cycle_keeps_the_cells_of_each_labelled_event_in_the_cell_exception(
    tiny_model: TorchDetector,
) -> None:
    window = two_cameras()
    labels = np.full(len(window), -1)
    labels[40:50] = labels[100:110] = 0  # the racing square of each camera, marked normal
    config = replace(CONFIG, labels=LabelLearning(cell_exception=True))
    result = run_cycle(
        tiny_model.model, tiny_model.info.metadata, tiny_model, replace(window, labels=labels), [], config
    )
    learned = result.report["training"]["labelled_normal"]["cell_exception"]
    assert learned["events"] == 2 and learned["cells_kept"] > 0 and learned["reach"] > 0
    if result.model is not None:  # an accepted candidate serves it
        assert result.model.exception is not None
        assert result.model.config.exception_cells == learned["cells_kept"]


def test_a_kind_the_site_accepts_is_served_as_an_exception_that_validation_does_not_hold_against_it(
    tiny_model: TorchDetector,
) -> None:
    window = two_cameras(seed=5)  # a window whose cycle the tiny model accepts without labels too
    labels, kinds = np.full(len(window), -1), np.zeros(len(window), dtype=np.int64)
    labels[40:50] = 0  # the first camera's racing square, marked normal with a category
    kinds[40:50] = kind_key("bicycle")
    labelled = replace(window, labels=labels, kinds=kinds)
    mined = mine(labelled, window_evidence(tiny_model, labelled), CONFIG)
    assert not (mined.normal[40:50].any() or mined.abnormal[40:50].any())  # neither: the exception's alone
    result = run_cycle(tiny_model.model, tiny_model.info.metadata, tiny_model, labelled, [], CONFIG)
    learned = result.report["training"]["labelled_normal"]
    assert learned["accepted_frames"] == 10 and "cells_added" not in learned  # not learned as looks
    assert result.report["mined"]["abnormal"] > 0  # the second camera's square: the same kind, mined
    # the exception takes the mined squares (and the pasted pseudo anomalies like them) out, as the operator
    # asked: the candidate is validated with the exception of the model in service (none)
    assert result.accepted, result.reason
    assert result.model is not None and result.model.exception is not None
    assert result.model.config.exception_cells == learned["cell_exception"]["cells_kept"]
    plain = copy.deepcopy(result.model)
    plain.set_exception(torch.zeros(0, 1), torch.zeros(0), 1.0, 0.0)
    square = window.clips(np.arange(100, 110), TINY_DETECTOR.history)  # the second camera's square
    served_raw = clip_raw_scores(TorchDetector(result.model, result.metadata), square)
    assert served_raw.mean() < clip_raw_scores(TorchDetector(plain, result.metadata), square).mean()


def test_a_refused_cycle_still_serves_the_kinds_the_site_accepts_once(tiny_model: TorchDetector) -> None:
    window = two_cameras(seed=1)  # a window whose adaptation the tiny model refuses with these labels
    labels, kinds = np.full(len(window), -1), np.zeros(len(window), dtype=np.int64)
    labels[40:50], kinds[40:50] = 0, kind_key("bicycle")
    labelled = replace(window, labels=labels, kinds=kinds)
    result = run_cycle(tiny_model.model, tiny_model.info.metadata, tiny_model, labelled, [], CONFIG)
    assert result.accepted and "the cycle's adaptation:" in result.reason
    assert result.model is not None and result.metadata is not None and result.mined_normal is None
    assert result.model.exception is not None and result.metadata["selftrain"]["accepted_kinds_only"]
    assert result.report["accepted_kinds_only"]["cell_exception"]["cells_kept"] > 0
    # nothing else changed: the memory and the statistics are the parent's
    assert torch.equal(result.model.appearance.cells, tiny_model.model.appearance.cells)
    assert result.metadata["stream_stats"] == tiny_model.info.metadata["stream_stats"]
    assert result.metadata["parent"] == tiny_model.info.version
    # the next cycle over the same labels has nothing new to serve
    served = TorchDetector(result.model, result.metadata)
    again = run_cycle(result.model, result.metadata, served, labelled, [], CONFIG)
    assert "accepted_kinds_only" not in again.report


@pytest.mark.parametrize("site_changed", [True, False])
def test_a_fresh_fit_competes_only_where_the_site_no_longer_looks_like_the_footage(
    tiny_model: TorchDetector, site_changed: bool
) -> None:
    window = two_cameras()
    # the held-out normal frames' mean z under the model in service is compared with refit_normal_z
    config = replace(CONFIG, refit_min_frames=5, refit_normal_z=-100.0 if site_changed else 100.0)
    result = run_cycle(tiny_model.model, tiny_model.info.metadata, tiny_model, window, [], config)
    report = result.report
    assert "held_out_normal_z" in report["training"]
    assert ("refit" in report) == site_changed
    if not site_changed:
        return
    assert report["training"]["refit_s"] > 0 and {"accepted", "reason", "candidate_normal_z"} <= set(
        report["refit"]
    )
    if report["refit"]["chosen"]:
        assert result.accepted and result.metadata is not None and result.metadata["selftrain"]["refit"]
        assert result.metadata["parent"] == tiny_model.info.version
        assert report["validation"]["candidate_normal_z"] == report["refit"]["candidate_normal_z"]


def test_what_the_site_accepts_outlives_a_fresh_fit(tiny_model: TorchDetector) -> None:
    window = two_cameras()
    labels, kinds = np.full(len(window), -1), np.zeros(len(window), dtype=np.int64)
    labels[40:50], kinds[40:50] = 0, kind_key("bicycle")
    first = run_cycle(
        tiny_model.model,
        tiny_model.info.metadata,
        tiny_model,
        replace(window, labels=labels, kinds=kinds),
        [],
        CONFIG,
    )
    assert first.model is not None and first.metadata is not None and first.model.exception is not None
    # the next window has no labels and the site looks changed: a fresh fit competes (and wins there)
    config = replace(CONFIG, refit_min_frames=5, refit_normal_z=-100.0)
    served = TorchDetector(first.model, first.metadata)
    result = run_cycle(first.model, first.metadata, served, two_cameras(seed=11), [], config)
    assert result.report["refit"]["chosen"], result.report["refit"]["reason"]
    assert result.model is not None and result.model.exception is not None
    assert torch.allclose(result.model.exception.descriptors, first.model.exception.descriptors, atol=1e-5)
    assert set(result.model.exception.kinds.tolist()) == {kind_key("bicycle")}  # with their kind


@pytest.mark.parametrize(("memory_frames", "frames_offered"), [(600, 12), (5, 5)])
def test_at_most_memory_frames_offer_cells_to_the_memory(
    tiny_model: TorchDetector, memory_frames: int, frames_offered: int
) -> None:
    window = two_cameras()
    normal = np.zeros(len(window), dtype=bool)
    normal[:12] = True
    train = np.flatnonzero(normal)
    masks = np.ones((len(train), HEIGHT // 2, WIDTH // 2), dtype=np.float32)  # every cell usable
    mined = MinedSet(normal, ~normal, np.empty(0, int), np.empty(0, int), train, masks, 1.0)
    config = replace(CONFIG, cells_per_frame=3, memory_frames=memory_frames)
    candidate = copy.deepcopy(tiny_model.model)
    assert adapt_appearance(candidate, window, mined, config, np.random.default_rng(0)) == frames_offered * 3


@pytest.mark.parametrize(("growth", "max_cells", "size"), [(10, 1000, 42), (10, 36, 36), (0, 1000, 32)])
def test_the_memory_grows_by_at_most_memory_growth_cells_up_to_its_largest(
    tiny_model: TorchDetector, tmp_path: Path, growth: int, max_cells: int, size: int
) -> None:
    window = two_cameras()
    normal = np.zeros(len(window), dtype=bool)
    normal[:12] = True
    train = np.flatnonzero(normal)
    masks = np.ones((len(train), HEIGHT // 2, WIDTH // 2), dtype=np.float32)
    mined = MinedSet(normal, ~normal, np.empty(0, int), np.empty(0, int), train, masks, 1.0)
    config = replace(CONFIG, memory_growth=growth, memory_max_cells=max_cells)
    candidate = copy.deepcopy(tiny_model.model)
    old_cells = candidate.appearance.cells.clone()
    adapt_appearance(candidate, window, mined, config, np.random.default_rng(0))
    cells = candidate.appearance.cells
    assert len(cells) == candidate.config.bank_size == size  # TINY_DETECTOR remembers 32
    if size > len(old_cells):
        assert torch.allclose(cells[: len(old_cells)], old_cells, atol=1e-5)  # what it covered stays
    # the model's files describe the grown memory: written and loaded back, it scores as before
    metadata = {**tiny_model.info.metadata, **model_metadata(candidate.config, {}), "version": "grown"}
    served = SelfTrainer(OnlineConfig(selftrain=config), tmp_path)._materialize(candidate, metadata)
    clips = window.clips(np.arange(4), served.info.history)
    expected = TorchDetector(candidate, metadata).stream_maps(clips)
    # cells the memory holds exactly are at distance 0, where sqrt magnifies rounding
    np.testing.assert_allclose(served.stream_maps(clips), expected, atol=2e-2, rtol=1e-2)


def test_a_swap_keeps_the_site_s_normal_level_as_a_level_not_a_moved_median(
    tiny_model: TorchDetector,
) -> None:
    window = two_cameras()
    frames = np.arange(0, 30)
    # the model in service scores these frames as unusual (3 z above its own calibration)
    calibration = ScoreCalibration.from_dict(tiny_model.info.metadata["calibration"])
    raised = replace(calibration, level=3.0)
    current = TorchDetector(tiny_model.model, {**tiny_model.info.metadata, "calibration": raised.to_dict()})
    refitted, references = refit_statistics(tiny_model, current, window, frames, 1000)
    clips = window.clips(frames, tiny_model.info.history)
    served = float(np.median(model_z(current, clip_raw_scores(current, clips))))
    candidate = TorchDetector(tiny_model.model, {**tiny_model.info.metadata, **refitted})
    assert float(np.median(model_z(candidate, clip_raw_scores(candidate, clips)))) == pytest.approx(
        served, abs=1e-4
    )
    kept = ScoreCalibration.from_dict(refitted["calibration"])
    assert kept.median == pytest.approx(references[None].median) and kept.level == pytest.approx(3.0, abs=0.5)
    # the trigger of a fresh fit reads the model's own z, without the level it is held at
    assert float(np.median(window_evidence(candidate, window).z[frames])) < served - 2


def test_a_nan_candidate_is_refused(tiny_model: TorchDetector, tmp_path: Path) -> None:
    window = two_cameras()
    mined = mine(window, window_evidence(tiny_model, window), CONFIG)
    broken = TorchDetector(_nan_copy(tiny_model), tiny_model.info.metadata)
    verdict = validate(tiny_model, broken, window, mined, CONFIG)
    assert not verdict.accepted and "not finite" in verdict.reason
    trainer = SelfTrainer(OnlineConfig(selftrain=CONFIG), tmp_path)
    with pytest.raises(InvalidModelError, match="NaN"):
        trainer._materialize(broken.model, {**tiny_model.info.metadata, "version": "broken"})


def _nan_copy(detector: TorchDetector) -> torch.nn.Module:
    model = copy.deepcopy(detector.model)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    return model


def test_cold_start_then_cycles_over_a_stream(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    videos = {f"v{i}": synthetic_video(60, rng, anomaly=(40, 59) if i % 2 else None) for i in range(4)}
    config = OnlineConfig(
        selftrain=CONFIG,
        window_frames=120,
        cycle_frames=60,
        coldstart_frames=100,
        coldstart_min_frames=20,
        detector=TINY_DETECTOR,
    )
    trainer = SelfTrainer(config, tmp_path)
    cycles: list[dict] = []
    streamed = stream_online(videos, trainer, MotionBaseline(HEIGHT, WIDTH), cycles, fps=10)
    assert set(streamed) == set(videos) and all(len(s.scores) == 60 for s in streamed.values())
    assert cycles[0]["cold_start"] and trainer.serving is not None
    assert len(cycles) >= 2
    onnx_path, pt_path = trainer.model_paths()
    assert onnx_path.is_file() and pt_path.is_file()


def test_the_view_is_checked_between_cycles_and_a_moved_one_served_at_once(
    tiny_model: TorchDetector, tmp_path: Path
) -> None:
    rng = np.random.default_rng(6)
    videos = {f"v{i}": synthetic_video(60, rng) for i in range(2)}
    config = OnlineConfig(
        selftrain=CONFIG,
        window_frames=120,
        cycle_frames=100,
        view_check_frames=20,
        moved_place_z=-1.0,  # every view counts as moved (the tiny model's place evidence never passes its gate)
        rebase_z=0.0,
        detector=TINY_DETECTOR,
    )
    metadata = {**tiny_model.info.metadata, "version": "site-model"}
    trainer = SelfTrainer(config, tmp_path, model=tiny_model.model, metadata=metadata)
    cycles: list[dict] = []
    stream_online(videos, trainer, MotionBaseline(HEIGHT, WIDTH), cycles, batch_size=10, fps=10)
    checks = [c["after_frames"] for c in cycles if c.get("view_check")]
    assert checks[:4] == [20, 40, 60, 80] and 100 not in checks  # the cycle at 100 checks the view itself
    assert [c["after_frames"] for c in cycles if not c.get("view_check")] == [100]
    first = next(c for c in cycles if c.get("view_check"))
    assert first["accepted"] and first["reason"].startswith("the place map silenced")
    assert trainer.metadata is not None and trainer.metadata["version"] != "site-model"


def test_the_model_keeps_anchors_of_its_footage_in_its_weights_file_only(
    tiny_model: TorchDetector, tmp_path: Path
) -> None:
    anchors = tiny_model.model.anchors
    history = tiny_model.info.history
    assert anchors is not None and anchors.shape[1:] == (history + 1, HEIGHT, WIDTH) and len(anchors) > 10
    save_detector(tiny_model.model, tiny_model.info.metadata, tmp_path / "m.pt")
    save_detector(tiny_model.model, tiny_model.info.metadata, tmp_path / "m.onnx")
    np.testing.assert_array_equal(load_detector(tmp_path / "m.pt").model.anchors, anchors)
    bare = copy.deepcopy(tiny_model.model)
    bare.anchors = None
    save_detector(bare, tiny_model.info.metadata, tmp_path / "bare.onnx")
    # the served graph does not carry them
    assert (tmp_path / "m.onnx").stat().st_size == (tmp_path / "bare.onnx").stat().st_size


def test_a_mined_set_full_of_the_anomaly_is_caught_against_the_model_s_own_footage(
    tiny_model: TorchDetector,
) -> None:
    # a busy window: the racing square in every frame, and the mining took most of it for normal
    frames = synthetic_video(120, np.random.default_rng(11), anomaly=(0, 119))
    window = Window(frames, np.zeros(len(frames), dtype=int))
    normal = np.zeros(len(frames), dtype=bool)
    normal[:90] = True
    abnormal = ~normal
    held_out = np.arange(72, 90)
    train = np.r_[np.arange(72), np.arange(90, 120)]
    masks = np.ones((len(train), HEIGHT // 2, WIDTH // 2), np.float32)
    masks[72:] = 0.0  # the mined anomalies' pixels are masked, the "normal" frames are learned whole
    mined = MinedSet(normal, abnormal, held_out[::2], held_out[1::2], train, masks, 1.0)
    candidate = copy.deepcopy(tiny_model.model)
    adapt_motion(candidate, window, mined, CONFIG)
    adapt_appearance(candidate, window, mined, CONFIG, np.random.default_rng(0))
    refitted, reference = refit_statistics(
        TorchDetector(candidate, tiny_model.info.metadata), tiny_model, window, mined.calibration, 1000
    )
    learned = TorchDetector(candidate, {**tiny_model.info.metadata, **refitted})
    blind = validate(tiny_model, learned, window, mined, CONFIG, reference)
    anchored = validate(tiny_model, learned, window, mined, CONFIG, reference, tiny_model.model.anchors)
    assert not anchored.accepted

    def kept(verdict: Validation) -> float:  # how much of the anomalies' separation the candidate keeps
        return (
            verdict.metrics["candidate_abnormal_separation"] / verdict.metrics["current_abnormal_separation"]
        )

    # held-out frames of the same contaminated set hide part of what the candidate unlearned
    assert kept(anchored) < kept(blind) - 0.05
    unchanged = validate(tiny_model, tiny_model, window, mined, CONFIG, None, tiny_model.model.anchors)
    assert unchanged.accepted and kept(unchanged) == pytest.approx(1.0)


def test_adaptation_keeps_where_the_model_learned_things_move(tiny_model: TorchDetector) -> None:
    # a mined set in which something crosses where the fit saw nothing: not learned as a path
    frames = synthetic_video(60, np.random.default_rng(5), anomaly=(0, 59))
    window = Window(frames, np.zeros(len(frames), dtype=int))
    normal = np.ones(len(frames), dtype=bool)
    train = np.arange(len(frames))
    masks = np.ones((len(train), HEIGHT // 2, WIDTH // 2), np.float32)
    mined = MinedSet(normal, ~normal, np.arange(0), np.arange(0), train, masks, 1.0)
    candidate = copy.deepcopy(tiny_model.model)
    assert candidate.place is not None and tiny_model.model.place is not None
    adapt_motion(candidate, window, mined, CONFIG)
    assert not torch.equal(candidate.motion.normal_speed, tiny_model.model.motion.normal_speed)
    assert torch.equal(candidate.place.rarity, tiny_model.model.place.rarity)


def test_the_place_statistics_are_refitted_on_the_cameras_the_map_still_scores() -> None:
    """A camera whose view the map no longer knows has no place evidence (taken out): its zeros do not
    enter the place stream's normal level; the other streams take every camera's frames."""
    walkers = walkers_detector()
    rng = np.random.default_rng(4)
    gate = Window(walker_video(30, WIDTH * 0.25 + 3, rng), np.zeros(30, int))
    lobby = Window(walker_video(30, WIDTH * 0.8, rng), np.zeros(30, int))
    silenced = TorchDetector(walkers.model, {**walkers.info.metadata, PLACE_SILENCED_CAMERAS: ["lobby"]})
    joined = concat_windows([gate, lobby], ["gate", "lobby"])
    refitted, _ = refit_statistics(silenced, silenced, joined, np.arange(60), 10)
    alone, _ = refit_statistics(silenced, silenced, concat_windows([gate], ["gate"]), np.arange(30), 10)
    assert refitted["stream_stats"]["place"] == alone["stream_stats"]["place"]
    assert refitted["stream_stats"]["motion"] != alone["stream_stats"]["motion"]
