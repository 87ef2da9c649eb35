"""The trainer a site keeps: a model that does not know the site is replaced as a cold start replaces no
model, and a fresh fit that does not know it either is refused with the old model kept."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.detector.flow import FlowConfig
from models.detector.runtime import TorchDetector, load_detector
from models.detector.scores import ScoreCalibration
from models.selftrain.adaptation import fitted_structure
from models.selftrain.config import OnlineConfig, Window
from models.selftrain.cycle import CycleResult, run_cycle
from models.selftrain.registration import warped_map
from models.selftrain.thresholds import ConsensusThreshold
from models.selftrain.trainer import SelfTrainer, concat_windows
from tests.models.conftest import (
    HEIGHT,
    TINY_DETECTOR,
    WIDTH,
    synthetic_video,
    walker_video,
    walkers_detector,
)
from tests.models.selftrain.test_cycle import CONFIG, fitted
from tests.models.selftrain.test_registration import moved, textured_site


@pytest.fixture(scope="module")
def site_model() -> TorchDetector:
    return fitted(TINY_DETECTOR)


def site_window(frames: int = 120, seed: int = 11) -> Window:
    rng = np.random.default_rng(seed)
    windows = [Window(synthetic_video(frames // 2, rng), np.zeros(frames // 2, dtype=int)) for _ in range(2)]
    return concat_windows(windows)


def test_windows_joined_keep_their_labels_and_accepted_kinds() -> None:
    frames = np.zeros((3, HEIGHT, WIDTH), np.uint8)
    labelled = Window(frames, np.zeros(3, int), np.array([0, -1, 0]), np.array([7, 0, 0]))
    joined = concat_windows([Window(frames, np.zeros(3, int)), labelled])
    assert joined.labels is not None and joined.labels.tolist() == [-1, -1, -1, 0, -1, 0]
    assert joined.accepted is not None and joined.accepted.tolist() == [False] * 3 + [True, False, False]
    assert joined.kinds is not None and joined.kinds.tolist() == [0, 0, 0, 7, 0, 0]
    assert concat_windows([Window(frames, np.zeros(3, int))]).accepted is None


def trainer_with(model: TorchDetector, tmp_path: Path, **online: float) -> SelfTrainer:
    settings = {"coldstart_frames": 100, "coldstart_min_frames": 20, "rebase_frames": 100, **online}
    config = OnlineConfig(selftrain=CONFIG, detector=TINY_DETECTOR, **settings)
    metadata = {**model.info.metadata, "version": "site-model"}
    return SelfTrainer(config, tmp_path, model=model.model, metadata=metadata)


def test_a_scene_the_model_never_saw_scores_its_quiet_quarter_higher(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    trainer = trainer_with(site_model, tmp_path)
    own = trainer.quiet_z(site_model, site_window())
    foreign = site_window()
    # another scene: the picture turned round and its contrast reversed, noisier, a crowd of blobs racing
    rng = np.random.default_rng(2)
    frames = 255 - foreign.frames[:, ::-1, ::-1]
    frames = np.clip(frames + rng.normal(0, 25, frames.shape), 0, 255).astype(np.uint8)
    assert trainer.quiet_z(site_model, replace(foreign, frames=frames)) > own + 1.0


def test_a_model_that_does_not_know_the_site_is_replaced_by_a_fresh_cold_start(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    trainer = trainer_with(site_model, tmp_path, rebase_z=-100.0)  # every window counts as foreign
    trainer.replay = [site_window().frames[:10]]
    result = trainer.cycle(site_window(seed=12))
    assert result.accepted, result.reason
    assert result.report["rebase"] and result.report["parent"] == "site-model"
    assert "model replaced" in result.reason and result.metadata is not None
    assert result.metadata["parent"] == "site-model" and trainer.metadata is result.metadata
    assert sum(len(run) for run in trainer.replay) == int(result.mined_normal.sum())  # the old replay is gone
    onnx_path, pt_path = trainer.model_paths()
    assert onnx_path.is_file() and pt_path.is_file()
    reloaded = load_detector(pt_path, "cpu", 1)
    assert reloaded.info.metadata["parent"] == "site-model"


def test_fits_afresh_measure_the_flow_of_the_sites_footage_not_the_models(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    trainer = trainer_with(site_model, tmp_path, rebase_z=-100.0)
    unknown = trainer.config.for_source(None)
    assert (
        unknown.selftrain.fit_flow is None and unknown.detector.flow == FlowConfig()
    )  # the model's, as before
    trainer.config = trainer.config.for_source((HEIGHT * 4, WIDTH * 4))  # the site's cameras have the pixels
    site_flow = FlowConfig.for_source((HEIGHT * 4, WIDTH * 4), (HEIGHT, WIDTH))
    assert trainer.config.selftrain.fit_flow == trainer.config.detector.flow == site_flow
    result = trainer.cycle(site_window(seed=12))
    assert result.accepted and result.report["rebase"] and result.model is not None
    assert site_model.model.config.flow == FlowConfig() and result.model.config.flow == site_flow
    # a cycle's fresh fit takes the same structure
    assert fitted_structure(TINY_DETECTOR, site_flow).flow == site_flow
    assert fitted_structure(TINY_DETECTOR).flow == TINY_DETECTOR.flow


def test_a_site_at_another_frame_rate_is_replaced_with_its_gap_and_cycles_go_on(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    """Cameras at 5 frames/s: the replacement measures the flow over 1 frame, and the next cycles (their
    fresh fits keep the model's gap, to be validated on the same clips) and the threshold's consensus go on."""
    trainer = trainer_with(site_model, tmp_path, rebase_z=-100.0)
    trainer.config = trainer.config.for_source((HEIGHT * 4, WIDTH * 4), fps=5.0)
    assert trainer.config.selftrain.fit_flow is not None and trainer.config.selftrain.fit_flow.gap == 1
    trainer.reference = site_window(seed=3).clips(np.arange(5), site_model.info.history)  # the old model's
    replaced = trainer.cycle(site_window(seed=12))
    assert replaced.accepted and replaced.report["rebase"] and replaced.model is not None
    assert replaced.model.config.flow.gap == 1 and trainer.serving is not None
    trainer.config = replace(trainer.config, rebase_z=0.0)  # the site is known now
    after = trainer.cycle(site_window(seed=13))
    assert "rebase" not in after.report
    if after.model is not None:
        assert after.model.config.flow.gap == 1
    model = trainer.model
    assert model is not None
    config = replace(CONFIG, refit_min_frames=5, refit_normal_z=-100.0, fit_flow=FlowConfig(gap=2))
    result = run_cycle(model, trainer.metadata or {}, trainer.serving, site_window(seed=14), [], config)
    assert "refit" in result.report  # fitted afresh over the model's gap, and judged: no clip too short
    if result.model is not None:
        assert result.model.config.flow.gap == 1
    # a rollback to the model from before (its flow over 2 frames) scores clips of its own for the consensus
    trainer.adopt(site_model.model, {**site_model.info.metadata, "version": "site-model"}, site_model)
    trainer._update_consensus(site_window(seed=15))
    assert trainer.reference is not None and trainer.reference.shape[1] == site_model.info.history + 1


def test_a_fresh_fit_that_does_not_know_the_site_either_is_refused(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    trainer = trainer_with(site_model, tmp_path, rebase_z=-100.0)
    trainer.config = replace(trainer.config, selftrain=replace(CONFIG, refit_normal_z=-100.0))
    serving = trainer.serving
    result = trainer.cycle(site_window(seed=12))
    assert not result.accepted and "does not know the site either" in result.reason
    assert trainer.metadata is not None and trainer.metadata["version"] == "site-model"
    assert trainer.serving is serving
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site-model.onnx", "site-model.pt"]


def test_a_model_that_knows_the_site_is_not_replaced(site_model: TorchDetector, tmp_path: Path) -> None:
    never = trainer_with(site_model, tmp_path, rebase_z=0.0)
    assert never._foreign(site_window()) is None
    (tmp_path / "short").mkdir()
    short = trainer_with(site_model, tmp_path / "short", rebase_z=-100.0)
    assert short._foreign(site_window(frames=60)) is None  # under rebase_frames: not judged


def test_a_model_that_does_not_know_the_site_is_judged_before_a_cold_start_s_worth(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    """Even the quietest quarter far from normal is judged on `rebase_frames` (the first cycle's window),
    fewer than a cold start needs: every frame until then is served on the wrong scale."""
    trainer = trainer_with(site_model, tmp_path, rebase_z=-100.0, coldstart_frames=200)
    found = trainer._foreign(site_window())
    assert found is not None and found[0].startswith("its quietest quarter")


def test_a_settled_adaptive_threshold_bounds_mining_at_0_5_not_alerts(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    trainer = SelfTrainer(OnlineConfig(selftrain=CONFIG), tmp_path)
    trainer.serving = site_model
    assert trainer.alert_threshold() is None and trainer.mining_threshold() is None  # not settled
    calibration = ScoreCalibration.from_dict(site_model.info.metadata["calibration"])
    z = 4.0 + 2.0 * np.log(0.3 / 0.7)  # served as 0.3 (ScorerConfig: z 4 is 0.5, width 2)
    trainer.consensus = ConsensusThreshold(items=10, stopped=True)
    trainer.reference_raw = [np.full(10, calibration.median + calibration.scale * (z - calibration.level))]
    # alerts: the service bounds it below by its configured threshold (workers/config.hysteresis_config)
    assert trainer.alert_threshold() == pytest.approx(0.3)
    assert trainer.mining_threshold() == 0.5  # never so low that normal frames are mined as abnormal


def test_a_place_map_that_no_longer_fits_the_view_is_silenced_before_the_cycle(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    # every window counts as moved (the tiny model's place evidence never passes its gate)
    trainer = trainer_with(site_model, tmp_path, rebase_z=0.0, moved_place_z=-1.0)
    old_reference = trainer.reference = site_window(seed=3).clips(np.arange(5), site_model.info.history)
    result = trainer.cycle(site_window(seed=12))
    assert result.accepted, result.reason  # even where the cycle's candidate is refused
    assert result.reason.startswith("the place map silenced") and result.report["place_quiet_z"] == 0.0
    assert result.report["view_changed"]["place_quiet_z"] == 0.0
    assert trainer.model is result.model and trainer.metadata is result.metadata
    assert trainer.model is not None and not trainer.model.place.rarity.any()  # nothing is rare anywhere
    assert site_model.model.place.rarity.any()  # the model in service before is untouched
    assert trainer.reference is not old_reference  # the threshold's consensus starts again
    served = load_detector(trainer.model_paths()[0], "cpu", 1)
    maps = served.stream_maps(site_window(seed=13).clips(np.arange(10, 20), served.info.history))
    assert not maps[:, served.info.streams.index("place")].any()


def test_a_view_that_moved_is_handed_over_before_the_cycle_runs(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    """Given somewhere to publish it, the cycle hands over the silenced model at once, before mining, and
    returns its own result alone."""
    trainer = trainer_with(site_model, tmp_path, rebase_z=0.0, moved_place_z=-1.0)
    published: list[CycleResult] = []
    result = trainer.cycle(site_window(seed=12), publish_view=published.append)
    assert len(published) == 1 and published[0].reason.startswith("the place map silenced")
    assert published[0].accepted and "view_changed" not in result.report
    assert not result.reason.startswith("the place map silenced")


def test_a_place_map_that_fits_the_view_is_kept(site_model: TorchDetector, tmp_path: Path) -> None:
    trainer = trainer_with(site_model, tmp_path, rebase_z=0.0)
    assert trainer._place_quiet_z(site_window()) == (
        0.0,
        None,
    )  # the quiet quarter moves where the footage did
    (tmp_path / "off").mkdir()
    off = trainer_with(site_model, tmp_path / "off", rebase_z=0.0, moved_place_z=0.0)
    assert off._place_quiet_z(site_window()) is None


def test_a_model_whose_view_moved_is_replaced_once_the_window_is_long_enough(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    """A silenced place map says the camera moved: once the window holds what a cold start needs, the model
    is replaced as a cold start fits a site, however quiet its quarter (rebase_z out of reach)."""
    trainer = trainer_with(site_model, tmp_path, rebase_z=100.0, moved_place_z=-1.0)
    result = trainer.cycle(site_window(seed=12))
    assert result.accepted, result.reason
    assert result.reason.startswith("the place map silenced") and "its view moved" in result.reason
    assert result.report["rebase"] and result.model is not None and result.model.place is not None
    assert result.model.place.rarity.any()  # the fresh fit learned the new view's map
    (tmp_path / "short").mkdir()
    short = trainer_with(
        site_model, tmp_path / "short", rebase_z=100.0, moved_place_z=-1.0, coldstart_frames=200
    )
    assert "rebase" not in short.cycle(site_window()).report  # fewer frames than a cold start needs


def test_a_view_that_moved_is_served_with_the_model_s_maps_carried_to_it_once(
    site_model: TorchDetector, tmp_path: Path
) -> None:
    """The camera was knocked: the model is served with its maps of the view carried to the new one at
    once, and is not carried again while the view stays; several cameras' views joined are not registered
    (the window's ends disagree), nor is a moved view with registration off (its place map still fits)."""
    site = textured_site(HEIGHT, WIDTH, seed=4)
    model = copy.deepcopy(site_model.model)
    clips = np.repeat(site.round().astype(np.uint8)[None, None], site_model.info.history + 1, axis=1)
    model.anchors = np.repeat(clips, 8, axis=0)
    moved_view, warp = moved(site, 1.0, 0.0, (3.0, 2.0))
    rng = np.random.default_rng(0)

    def window_of(view: np.ndarray) -> Window:
        frames = view[None] + rng.normal(0, 2, (40, HEIGHT, WIDTH))
        return Window(frames.round().clip(0, 255).astype(np.uint8), np.zeros(40, dtype=int))

    config = OnlineConfig(selftrain=CONFIG, detector=TINY_DETECTOR, register_moved_view=True)
    metadata = {**site_model.info.metadata, "version": "site-model"}
    trainer = SelfTrainer(config, tmp_path, model=model, metadata=metadata)
    result = trainer.check_view(window_of(moved_view))
    assert result is not None and result.accepted and result.reason.startswith("the view moved")
    assert result.report["registered"]["corner_shift_px"] == pytest.approx(np.hypot(3, 2), abs=0.5)
    assert trainer.model is result.model and trainer.metadata is not None
    assert trainer.metadata["selftrain"]["registered"] == result.report["registered"]
    carried = trainer.model.place.rarity.numpy() - warped_map(model.place.rarity.numpy(), warp)
    assert (
        np.abs(carried).mean() < 0.1 * np.abs(model.place.rarity.numpy()).mean()
    )  # the move found, near enough
    assert trainer.check_view(window_of(moved_view)) is None  # the view is now the one the model knows
    joined = concat_windows([window_of(site), window_of(moved_view)])
    assert trainer.check_view(joined) is None
    (tmp_path / "off").mkdir()
    off = SelfTrainer(
        replace(config, register_moved_view=False), tmp_path / "off", model=model, metadata=metadata
    )
    assert off.check_view(window_of(moved_view)) is None


def test_one_camera_of_several_that_moved_has_its_place_map_silenced(tmp_path: Path) -> None:
    """Three cameras' walkers keep to the path the map knows; the fourth camera moved and its walker
    crosses the lawn. A quarter of the joined window: the whole window's first quartile is quiet, the
    camera's own frames are not, and the reason names it."""
    walker_model = walkers_detector()
    rng = np.random.default_rng(1)
    frames = 40  # every 2nd frame read: the 20 a camera needs to be judged alone
    on_path = [Window(walker_video(frames, WIDTH * 0.25 + 3, rng), np.zeros(frames, int)) for _ in range(3)]
    lawn = Window(walker_video(frames, WIDTH * 0.8, rng), np.zeros(frames, int))
    joined = concat_windows([*on_path, lawn], ["gate", "yard", "dock", "lobby"])
    assert joined.cameras is not None and joined.camera_names[joined.cameras[-1]] == "lobby"
    config = OnlineConfig(
        selftrain=CONFIG,
        detector=walker_model.model.config,
        rebase_stride=2,
        view_check_frames=frames,
        coldstart_frames=frames,
        rebase_z=100.0,
    )
    trainer = SelfTrainer(config, tmp_path, model=walker_model.model, metadata=walker_model.info.metadata)
    z, camera = trainer._place_quiet_z(joined) or (0.0, None)
    assert camera == "lobby" and z > config.moved_place_z
    assert trainer._place_quiet_z(concat_windows(on_path)) == (0.0, None)
    site_moved = trainer._place_quiet_z(concat_windows([lawn] * 4))  # every camera: the site's view moved
    assert site_moved is not None and site_moved[0] > config.moved_place_z and site_moved[1] is None
    result = trainer.check_view(joined)
    assert result is not None and result.accepted
    assert "for camera lobby: even its own quietest quarter" in result.reason
    assert result.report["camera"] == "lobby"
    # the other cameras' views are as the model knows them: the map goes on scoring them, and the model
    # is kept, not replaced as a moved site's
    assert trainer.model is not None and trainer.model.place is not None
    assert trainer.model.place.rarity.any()
    assert trainer.metadata is not None and trainer.metadata["place_silenced_cameras"] == ["lobby"]
    assert trainer._foreign(joined) is None
    assert trainer.serving is not None
    place = trainer.serving.info.streams.index("place")
    assert not joined.stream_maps(trainer.serving, np.flatnonzero(joined.cameras == 3))[:, place].any()
    assert joined.stream_maps(trainer.serving, np.flatnonzero(joined.cameras == 0))[:, place].any()
    # the silenced camera is scored without the map: the next check finds nothing more to silence
    assert trainer.check_view(joined) is None
    # the lobby camera alone, named, is scored as the service scores it; unnamed, with the whole map
    alone = concat_windows([lawn], ["lobby"])
    assert not alone.stream_maps(trainer.serving, np.arange(frames))[:, place].any()
    assert concat_windows([lawn]).stream_maps(trainer.serving, np.arange(frames))[:, place].any()
    # every camera of another site moved: its view, the whole map silenced
    site = trainer.check_view(concat_windows([lawn] * 4))
    assert site is not None and "the window's quietest quarter" in site.reason
    assert not trainer.model.place.rarity.any()
