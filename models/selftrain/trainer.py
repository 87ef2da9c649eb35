"""A site's self-improving detector: cold start, self-training cycles, model files, adaptive threshold.

`SelfTrainer` holds what the retraining worker keeps between cycles (the model being improved, the replay
of earlier normal footage, the consensus threshold). The worker feeds it windows read from Redis and
publishes what it accepts; `stream_online` feeds it a dataset streamed exactly as the inference worker
scores cameras, for `vigil eval --mode online|coldstart`. Both run the same cycle code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.detector.base import Detector
from models.detector.export import save_detector
from models.detector.fitting import FitConfig
from models.detector.motion import MotionBaseline
from models.detector.runtime import load_detector
from models.detector.scores import ScoreCalibration
from models.detector.streams import DetectorConfig, DetectorNet
from models.scoring.camera import ScorerConfig, score_of_z
from models.selftrain.adaptation import fitted_structure
from models.selftrain.config import OnlineConfig, Window
from models.selftrain.cycle import CycleResult, run_cycle, silenced_place, withdrawn_kinds
from models.selftrain.mining import consecutive_runs, mine, run_cameras, run_videos, window_evidence
from models.selftrain.registration import MIN_MOVE_PX, registered_view, view_move
from models.selftrain.thresholds import ConsensusThreshold
from models.selftrain.validation import (
    clip_raw_scores,
    quiet_place_z,
    quiet_place_z_by_camera,
    quiet_quarter_z,
    sampled_frames,
    sampled_patch_scores,
)

log = logging.getLogger(__name__)


def concat_windows(windows: list[Window], names: Sequence[str] | None = None) -> Window:
    """One window of several cameras' windows (`names`: theirs, in order; by default their numbers from 1):
    history and runs never cross from one to the next, and each frame says which camera it came from
    (a single window too, where its camera is named: the model may score it as that camera)."""
    segments, offset = [], 0
    for window in windows:
        _, codes = np.unique(window.segments, return_inverse=True)
        segments.append(codes + offset)
        offset += int(codes.max()) + 1 if len(codes) else 0
    labels = kinds = None
    if any(w.labels is not None for w in windows):
        labels = np.concatenate([w.labels if w.labels is not None else np.full(len(w), -1) for w in windows])
    if any(w.kinds is not None for w in windows):
        kinds = np.concatenate(
            [w.kinds if w.kinds is not None else np.zeros(len(w), np.int64) for w in windows]
        )
    named = len(windows) > 1 or names is not None
    return Window(
        frames=np.concatenate([w.frames for w in windows]),
        segments=np.concatenate(segments),
        labels=labels,
        kinds=kinds,
        cameras=np.repeat(np.arange(len(windows)), [len(w) for w in windows]) if named else None,
        camera_names=tuple(names or (str(i + 1) for i in range(len(windows)))) if named else (),
    )


class SelfTrainer:
    """The model a site improves, between cycles. Models are written to `models_dir` as VERSION.pt (the
    weights fine-tuned next) and VERSION.onnx (served), and each is loaded back and checked before use."""

    def __init__(
        self,
        config: OnlineConfig,
        models_dir: Path,
        device: str = "cpu",
        threads: int = 0,
        model: DetectorNet | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.models_dir = models_dir
        self.device, self.threads = device, threads
        self.model, self.metadata = model, metadata
        self.serving: Detector | None = None
        self.replay: list[np.ndarray] = []
        self.reference: np.ndarray | None = None  # clips every model scores for the consensus
        self.reference_cameras: list[str | None] = []  # the camera of each (Window.camera_of)
        self.consensus: ConsensusThreshold | None = None
        self.reference_raw: list[np.ndarray] = []
        if model is not None and metadata is not None:
            self.serving = self._materialize(model, metadata)

    # ------------------------------------------------------------ model files
    def _materialize(self, model: DetectorNet, metadata: dict[str, Any]) -> Detector:
        """Writes VERSION.pt and VERSION.onnx and loads the ONNX file back (raises InvalidModelError)."""
        stem = self.models_dir / metadata["version"]
        save_detector(model, metadata, stem.with_suffix(".pt"))
        save_detector(model, metadata, stem.with_suffix(".onnx"))
        return load_detector(stem.with_suffix(".onnx"), self.device, self.threads)

    def adopt(self, model: DetectorNet, metadata: dict[str, Any], serving: Detector) -> None:
        """Continue from a model published elsewhere (a rollback, an operator's file)."""
        self.model, self.metadata, self.serving = model, metadata, serving

    def model_paths(self) -> tuple[Path, Path]:
        assert self.metadata is not None
        stem = self.models_dir / self.metadata["version"]
        return stem.with_suffix(".onnx"), stem.with_suffix(".pt")

    # ------------------------------------------------------------ threshold
    def mining_threshold(self) -> float | None:
        """eta_s from the consensus once it has settled (None: the configured constant)."""
        if not self.config.adaptive_threshold:
            return None
        score = self._consensus_score(with_level=False)  # mining reads scores without the level
        # never so low that normal frames are mined as abnormal
        return None if score is None else float(np.clip(score, 0.5, 0.95))

    def alert_threshold(self) -> float | None:
        """The served score at which a frame enters the consensus anomaly set (None before it settles). The
        service never alerts under its configured threshold for learned models (workers/config.py,
        hysteresis_config), which was chosen on event metrics: this one may raise the bar, not lower it."""
        score = self._consensus_score(with_level=True)
        return None if score is None else min(score, 0.95)

    def _consensus_score(self, with_level: bool) -> float | None:
        if self.consensus is None or not self.consensus.stopped or self.serving is None:
            return None
        calibration = ScoreCalibration.from_dict(self.serving.info.metadata["calibration"])
        if not with_level:
            calibration = replace(calibration, level=0.0)
        z = calibration.z(self.consensus.score_threshold(self.reference_raw[-1]))
        return float(score_of_z(np.float64(z), ScorerConfig()))

    def _update_consensus(self, window: Window) -> None:
        assert self.serving is not None
        if self.reference is not None and self.reference.shape[1] <= self.serving.info.history:
            # a model that reaches further back (another frame rate's flow) cannot score the clips kept:
            # its threshold's consensus starts again
            self.reference, self.consensus, self.reference_raw = None, None, []
        if self.reference is None:
            rng = np.random.default_rng(self.config.selftrain.seed)
            count = min(self.config.reference_frames, len(window))
            picks = np.sort(rng.choice(len(window), count, replace=False))
            self.reference = window.clips(picks, self.serving.info.history)
            self.reference_cameras = window.camera_of(picks)
            self.consensus = ConsensusThreshold(items=count)
        assert self.consensus is not None
        self.reference_raw.append(clip_raw_scores(self.serving, self.reference, self.reference_cameras))
        self.consensus.update(self.reference_raw)

    # ------------------------------------------------------------ cycles
    def _remember_normal(self, window: Window, normal: np.ndarray) -> None:
        for run in consecutive_runs(normal, window.segments):
            self.replay.append(window.frames[run])
        total = sum(len(r) for r in self.replay)
        while self.replay and total - len(self.replay[0]) >= self.config.replay_frames:
            total -= len(self.replay.pop(0))  # the oldest go first

    def withdraw(self, accepted: set[str]) -> CycleResult | None:
        """The model in service without the exception's cells of kinds no label accepts any longer
        (`accepted`: those still accepted), written, loaded back and current at once; None when nothing is
        withdrawn."""
        assert self.model is not None and self.metadata is not None
        result = withdrawn_kinds(self.model, self.metadata, accepted, self.config.selftrain)
        return None if result is None else self._serve(result)

    def _serve(self, result: CycleResult) -> CycleResult:
        """An accepted result's model written, loaded back and made current; refused where it does not load."""
        from models.detector.runtime import InvalidModelError

        assert result.model is not None and result.metadata is not None
        try:
            serving = self._materialize(result.model, result.metadata)
        except InvalidModelError as exc:
            return replace(
                result, accepted=False, reason=f"candidate does not load: {exc}", model=None, metadata=None
            )
        self.model, self.metadata, self.serving = result.model, result.metadata, serving
        return result

    def cold_start(self, window: Window, config: DetectorConfig, scored_by: Detector) -> CycleResult:
        """A first model fitted to a camera's own frames, without labels: the frames the detector that
        scored the window (the motion baseline) finds confidently normal, mined as in a cycle."""
        return self._fit_first(
            window, config, scored_by, "first model fitted to the camera's own confidently normal footage"
        )

    def _fit_first(
        self,
        window: Window,
        config: DetectorConfig,
        scored_by: Detector,
        reason: str,
        report: dict[str, Any] | None = None,
        max_quiet_z: float | None = None,
    ) -> CycleResult:
        """A model fitted afresh to the frames `scored_by` finds confidently normal; it becomes current
        unless it scores the window's quiet quarter above `max_quiet_z` (it does not know the site either)."""
        from models.detector.fitting import train_detector

        started = time.monotonic()
        selftrain = self.config.selftrain
        mined = mine(window, window_evidence(scored_by, window), selftrain)
        normal = np.flatnonzero(mined.normal)
        report = {**(report or {}), "cold_start": True, "window_frames": len(window), "mined": mined.counts()}

        def refused(why: str) -> CycleResult:
            report["seconds"] = round(time.monotonic() - started, 2)
            return CycleResult(False, why, report, mined_normal=mined.normal, mined_abnormal=mined.abnormal)

        if len(normal) < self.config.coldstart_min_frames:
            return refused(
                f"too few confident normal frames for a first model ({len(normal)}; "
                f"{self.config.coldstart_min_frames} needed)"
            )
        videos = run_videos(window, normal)
        trained = train_detector(
            videos,
            config,
            {"dataset": "stream", "videos": len(videos)},
            FitConfig(seed=selftrain.seed),
            cameras=run_cameras(window, normal),
        )
        if max_quiet_z is not None:
            fitted_z = self.quiet_z(trained.detector, window)
            report["fitted_quiet_z"] = round(fitted_z, 3)
            if fitted_z > max_quiet_z:
                return refused(f"a fresh fit does not know the site either (quiet quarter z {fitted_z:.1f})")
        parent = self.metadata["version"] if self.metadata is not None else None
        metadata = {**trained.metadata, "parent": parent}
        self.serving = self._materialize(trained.detector.model, metadata)
        self.model, self.metadata = trained.detector.model, metadata
        # what was remembered belongs to the model replaced: its replay and its threshold's scale
        self.replay, self.reference, self.consensus, self.reference_raw = [], None, None, []
        self._remember_normal(window, normal)
        self._update_consensus(window)
        report["seconds"] = round(time.monotonic() - started, 2)
        return CycleResult(True, reason, report, self.model, metadata, mined.normal, mined.abnormal)

    def quiet_z(self, detector: Detector, window: Window, patch: np.ndarray | None = None) -> float:
        """How far from normal `detector` finds the quietest quarter of the window: the first quartile
        of its own z (without the level a swap holds) over every `rebase_stride`-th frame (`patch`: their
        patch scores under `detector`, when already computed)."""
        if patch is None:
            patch = sampled_patch_scores(detector, window, self.config.rebase_stride)
        return quiet_quarter_z(detector, patch)

    def _foreign(self, window: Window, patch: np.ndarray | None = None) -> tuple[str, float] | None:
        """Why the model in service does not know the site, and its quiet quarter's z (None when it does):
        even the window's quietest quarter scores above `rebase_z` (judged from `rebase_frames`: every frame
        until then is served on a scale that pages on the site's normal footage), or its place map was
        silenced over the whole window (the site's view moved) and no fit has learned the new view's since
        (judged from `coldstart_frames`: replaced sooner, Ped2's moved copy lost the fit that relearns it).
        A map silenced for one camera of several (which leaves the map as it was) leaves the model to the
        others, whose views it knows: replaced by a fit to the joined window, their figures fell (README).
        `patch`: as for quiet_z."""
        if self.config.rebase_z == 0 or self.serving is None or len(window) < self.config.rebase_frames:
            return None
        z = self.quiet_z(self.serving, window, patch)
        if z > self.config.rebase_z:
            return f"its quietest quarter of the window scored z {z:.1f} (over {self.config.rebase_z:g})", z
        if len(window) < self.config.coldstart_frames:
            return None
        place = self.model.place if self.model is not None else None
        silenced = place is not None and not bool(place.rarity.any())  # a fitted map is rare somewhere
        # the previous version silenced the whole map for one camera too, and said for which
        if silenced and self.metadata is not None and self.metadata.get("place_silenced_for") is None:
            return f"its view moved (its place map silenced; the quietest quarter scored z {z:.1f})", z
        return None

    def _checks_place(self) -> bool:
        """Whether the view is checked: the model in service has a place stream and the check is on."""
        assert self.serving is not None
        return self.config.moved_place_z != 0 and "place" in self.serving.info.streams

    def _place_quiet_z(
        self, window: Window, patch: np.ndarray | None = None
    ) -> tuple[float, str | None] | None:
        """quiet_place_z of the model in service over the window and, where that finds the view as the map
        knows it and the window joins several cameras', over each camera's own frames: the largest, with
        the camera whose frames gave it (None: the whole window's: the site's view moved). None: it has no
        place stream, or the check is off. `patch`: as for quiet_z."""
        assert self.serving is not None
        if not self._checks_place():
            return None
        if patch is None:
            patch = sampled_patch_scores(self.serving, window, self.config.rebase_stride)
        found: tuple[float, str | None] = (quiet_place_z(self.serving, patch), None)
        if (
            window.cameras is not None
            and len(window.camera_names) > 1
            and found[0] <= self.config.moved_place_z
        ):
            cameras = window.cameras[sampled_frames(window, self.config.rebase_stride)]  # `patch`'s frames
            for camera, z in quiet_place_z_by_camera(self.serving, patch, cameras).items():
                if z > found[0]:
                    found = (z, window.camera_names[camera])
        return found

    def check_view(self, window: Window) -> CycleResult | None:
        """The model in service with its maps carried to a moved view, or with its place map silenced where
        it no longer fits the view, written, loaded back and current at once (see `cycle`); None where the
        view is as the model knows it. Between cycles too, over the newest `view_check_frames` frames: a
        camera that moved pages on every walker until then."""
        return self._check_place(window)[1]

    def _check_place(
        self, window: Window, patch: np.ndarray | None = None
    ) -> tuple[float | None, CycleResult | None]:
        """The place map's quiet z (None: not checked) and the model served for a moved view (None: none).
        A view that an affine map registers to the model's is served with the model's maps carried to it;
        one that no map registers (upside down, another site) with its place map silenced, where even the
        window's quietest quarter moves where the map says nothing does. `patch`: as for quiet_z."""
        assert self.model is not None and self.metadata is not None
        move = view_move(self.model, window) if self.config.register_moved_view else None
        if move is not None and move.shift > MIN_MOVE_PX:
            return None, self._serve_view(
                registered_view(self.model, self.metadata, move, self.config.selftrain)
            )
        place = self._place_quiet_z(window, patch)
        if place is None or place[0] <= self.config.moved_place_z:
            return (None if place is None else place[0]), None
        return place[0], self._serve_view(
            silenced_place(self.model, self.metadata, self.config.selftrain, *place)
        )

    def _serve_view(self, result: CycleResult) -> CycleResult | None:
        """The model in service with its maps carried to the moved view or its place map silenced (`result`),
        written, loaded back and current at once (None where it does not load: the model in service stays)."""
        assert self.metadata is not None
        result = self._serve(result)
        if not result.accepted:
            log.warning("%s stays in service for the moved view: %s", self.metadata["version"], result.reason)
            return None
        # the threshold's consensus was of the map's scores
        self.reference, self.consensus, self.reference_raw = None, None, []
        return result

    def rebase(self, window: Window, why: str, quiet_z: float) -> CycleResult:
        """The model in service replaced by one fitted afresh as a cold start fits it: mining the model's
        own scores would keep little but its blind spots (on Ped1 under the Ped2 model, 14-113 frames a
        window mined normal, 26-77% of them normal); the motion baseline assumes nothing of the scene. The
        new model must find the window's quiet quarter normal (z at most `refit_normal_z`)."""
        assert self.model is not None and self.metadata is not None
        version = self.metadata["version"]
        structure = fitted_structure(self.model.config, self.config.selftrain.fit_flow)
        result = self._fit_first(
            window,
            structure,
            MotionBaseline(structure.height, structure.width),
            f"model replaced: {why}; a first model fitted to the site's confidently normal footage",
            {"rebase": True, "parent": version, "quiet_z": round(quiet_z, 3)},
            max_quiet_z=self.config.selftrain.refit_normal_z,
        )
        log.info("model %s does not know the site: %s", version, result.reason)
        return result

    def cycle(self, window: Window, publish_view: Callable[[CycleResult], None] | None = None) -> CycleResult:
        """One self-training cycle; an accepted candidate is written, loaded back and becomes current. A
        view that moved is served first, its maps carried to it or its place map silenced (accepted even where
        the cycle then refuses its candidate: that model is in service): handed to `publish_view` at once
        where one is given (the cycle's mining and adaptation take minutes; the result is then the cycle's
        alone), else joined to the cycle's result."""
        assert self.model is not None and self.metadata is not None and self.serving is not None
        # every rebase_stride-th frame scored once by the model in service: the place check and the check
        # for a model that does not know the site both read it (unless the view moved)
        patch = (
            sampled_patch_scores(self.serving, window, self.config.rebase_stride)
            if self._checks_place()
            else None
        )
        place_z, moved = self._check_place(window, patch)
        if moved is not None and publish_view is not None:
            publish_view(moved)
        result = self._adapt_or_replace(window, patch if moved is None else None)
        result.report["place_quiet_z"] = None if place_z is None else round(place_z, 3)
        if moved is None or publish_view is not None:
            return result
        report = {**result.report, "view_changed": moved.report}
        if result.accepted:
            return replace(result, reason=f"{moved.reason}; then {result.reason}", report=report)
        return replace(
            moved,
            reason=f"{moved.reason}; the cycle's candidate refused: {result.reason}",
            report=report,
            mined_normal=result.mined_normal,
            mined_abnormal=result.mined_abnormal,
        )

    def _adapt_or_replace(self, window: Window, patch: np.ndarray | None) -> CycleResult:
        assert self.model is not None and self.metadata is not None and self.serving is not None
        foreign = self._foreign(window, patch)
        if foreign is not None:
            return self.rebase(window, *foreign)
        result = run_cycle(
            self.model,
            self.metadata,
            self.serving,
            window,
            self.replay,
            self.config.selftrain,
            self.mining_threshold(),
        )
        if not result.accepted or result.model is None or result.metadata is None:
            return result
        result = self._serve(result)
        if not result.accepted:
            return result
        assert result.metadata is not None
        if result.mined_normal is not None:
            self._remember_normal(window, np.flatnonzero(result.mined_normal))
        if self.reference is None or self.consensus is None or not self.consensus.stopped:
            self._update_consensus(window)
        threshold = self.alert_threshold()
        result.report["alert_threshold"] = threshold
        result.metadata["alert_threshold"] = threshold
        return result


ProgressCallback = Callable[[int], None]
