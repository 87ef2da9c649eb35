"""Self-training on a site's own stream: one cycle mines a scored window, adapts the detector, validates.

The same `run_cycle` serves the retraining worker (windows read from Redis) and `vigil eval --mode online`
(windows of a dataset streamed through the service's scoring), so that what is measured is what runs.

A cycle, over a window of consecutive frames with the scores the service gave them:
1. anomaly maps of the window under the model in service;
2. mining (models/selftrain/mining.py): an abnormal set (S >= eta_s, precise in every trial) and a normal set (the
   paper's rule, or by default its hinge over the localized score, smoothed as the service smooths it,
   away from mined anomalies), runs of >= FNmin frames, operator labels overriding both; pixel masks
   calibrated against the anomaly maps of the mined normal frames;
3. adaptation, starting from the current model, on the mined frames, normal and abnormal, with their
   anomalous pixels masked out (the paper's masked retraining, for each stream):
   - motion: the normal speed per pixel, a running mean in which the current one counts as
     `prior_frames` frames;
   - appearance: the memory of normal cells, a coreset of the current memory (the replay: nothing
     learned before is forgotten unless the site's new cells cover it) and the unmasked cells of the
     mined frames; the masked cells (an anomaly, with a margin) never enter it;
   - prediction (when the detector has it): masked L1 fine-tuning of the U-Net, with replay of earlier
     normal clips and pseudo anomalies, bounded in steps and seconds;
   - ordinal (added once operators have labelled an anomaly): the scoring head, one more round of
     self-trained ordinal regression on the cycle's pseudo labels and the operators' labels
     (models/selftrain/ordinal.py);
   then each stream's statistics refitted on one half of the held-out normal runs;
   and, where the model in service finds the site's held-out normal frames far from normal (another
   scene, a camera turned round), a second candidate: its streams fitted afresh to the mined normal
   frames (models/detector/fitting.py, as a cold start fits them);
4. validation against the model in service on the other half and on the mined anomalies: the candidate
   must not score held-out normal frames worse, must still set the mined anomalies apart from them, and
   must still react to pseudo anomalies pasted into them. When the ordinal head's round is refused, the
   cycle's candidate without that round is validated in its place. Of an accepted adaptation and an
   accepted fresh fit, the one that sets the mined anomalies further apart from the normal frames serves.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.detector.base import PLACE_SILENCED_CAMERAS, Detector
from models.detector.export import model_metadata, new_version
from models.detector.runtime import TorchDetector
from models.detector.streams import DetectorNet
from models.selftrain.adaptation import (
    adapt_appearance,
    adapt_motion,
    adapt_view_motion,
    fine_tune_prediction,
    fresh_fit,
    refit_statistics,
)
from models.selftrain.config import BATCH, MinedSet, SelfTrainConfig, Window
from models.selftrain.feedback import labelled_events, learn_labelled_normal, withdraw_kinds
from models.selftrain.mining import WindowEvidence, half_maps, mine, window_evidence
from models.selftrain.ordinal import cell_examples, train_ordinal, with_ordinal
from models.selftrain.validation import Validation, validate

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the cycle
@dataclass
class CycleResult:
    accepted: bool
    reason: str
    report: dict[str, Any]
    model: DetectorNet | None = None  # the candidate when accepted
    metadata: dict[str, Any] | None = None
    mined_normal: np.ndarray | None = None  # bool [N]: the window's mined normal frames
    mined_abnormal: np.ndarray | None = None  # bool [N]: and its mined anomalies


def run_cycle(
    model: DetectorNet,
    metadata: dict[str, Any],
    current: Detector,
    window: Window,
    replay: list[np.ndarray],
    config: SelfTrainConfig,
    eta_s: float | None = None,
) -> CycleResult:
    """One self-training cycle over a window scored by `current` (the served form of `model`)."""
    started = time.monotonic()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    report: dict[str, Any] = {
        "window_frames": len(window),
        "policy": config.policy,
        "parent": metadata["version"],
    }
    evidence = window_evidence(current, window)
    mined = mine(window, evidence, config, eta_s)
    report["mined"] = mined.counts()
    report["mask_reference"] = mined.reference_scale
    labelled = _labelled_normal(model, metadata, window, evidence)
    report["mining_s"] = round(time.monotonic() - started, 2)
    normal_count = len(mined.train) - int(mined.abnormal[mined.train].sum())
    if normal_count < config.min_normal_frames or len(mined.validation) == 0:
        reason = (
            f"too few confident normal frames ({int(mined.normal.sum())}; {config.min_normal_frames} needed)"
            if normal_count < config.min_normal_frames
            else f"too few confident normal runs to hold one out ({int(mined.normal.sum())} frames)"
        )
        report["seconds"] = round(time.monotonic() - started, 2)
        return _refused(model, metadata, window, mined, labelled, config, report, reason)
    adaptation: dict[str, Any] = {}
    report["training"] = adaptation
    adapted, candidates, adapted_metadata = _adapted_candidates(
        model, metadata, window, evidence, mined, labelled, replay, config, rng, adaptation
    )
    refit_started = time.monotonic()
    refit = fresh_fit(model, window, evidence, mined, config, adaptation)
    if refit is not None:
        adaptation["refit_s"] = round(time.monotonic() - refit_started, 2)
        # what operators accepted at the site (the same backbone's features) outlives a fit afresh
        refit = (_with_exception_of(refit[0], model), refit[1])
    refit_chosen = False
    report["adaptation_s"] = round(time.monotonic() - started - report["mining_s"], 2)
    for candidate in candidates:
        candidate_metadata, validation = _validated(
            candidate,
            adapted_metadata,
            current,
            window,
            mined,
            config,
            model.anchors,
            _with_exception_of(candidate, model),
        )
        report["candidate"] = candidate_metadata["version"]
        report["candidate_kind"] = candidate_metadata["kind"]
        report["validation"] = validation.to_dict()
        _log_verdict(window, mined, validation, "ordinal round" if candidate is not adapted else "adapted")
        if validation.accepted:
            break
        if candidate is not adapted:
            report["ordinal_refused"] = validation.reason
    if refit is not None:
        # no anchors: a refit is tried where the site no longer looks like the footage they come from
        refit_metadata, refit_validation = _validated(
            refit[0], {**metadata, **refit[1]}, current, window, mined, config, None
        )
        _log_verdict(window, mined, refit_validation, "refit")
        # of two accepted candidates, the one that sets the mined anomalies apart from normal frames more
        refit_chosen = refit_validation.accepted and (
            not validation.accepted
            or refit_validation.metrics.get("candidate_abnormal_separation", 0.0)
            > validation.metrics.get("candidate_abnormal_separation", 0.0)
        )
        report["refit"] = {
            "candidate": refit_metadata["version"],
            "chosen": refit_chosen,
            **refit_validation.to_dict(),
        }
        if refit_chosen:
            candidate, candidate_metadata, validation = refit[0], refit_metadata, refit_validation
            report["candidate"] = refit_metadata["version"]
            report["candidate_kind"] = refit_metadata["kind"]
            report["adaptation_validation"] = report["validation"]  # the adaptation's own verdict
            report["validation"] = refit_validation.to_dict()
    report["seconds"] = round(time.monotonic() - started, 2)
    report["validation_s"] = round(report["seconds"] - report["mining_s"] - report["adaptation_s"], 2)
    if not validation.accepted:
        return _refused(model, metadata, window, mined, labelled, config, report, validation.reason)
    candidate_metadata["selftrain"]["validation"] = report["validation"]
    candidate_metadata["selftrain"]["refit"] = refit_chosen
    reason = (
        f"fitted afresh to the site's normal frames: {validation.reason}"
        if refit_chosen
        else validation.reason
    )
    return CycleResult(True, reason, report, candidate, candidate_metadata, mined.normal, mined.abnormal)


@dataclass
class LabelledNormal:
    """A window's frames labelled normal, with their anomaly maps as the model scores them without its
    per-cell exception: the cells an exception keeps are chosen by how they stand out, and under the
    exception the cells it takes stand out no more (each cycle would keep the next ones: edges, crowds)."""

    frames: np.ndarray  # int [L]
    maps: np.ndarray  # [L, h', w']
    # the model's appearance statistics: how unusual an excepted cell must be (feedback.exception_seed)
    appearance_normal: dict[str, float] | None


def _labelled_normal(
    model: DetectorNet, metadata: dict[str, Any], window: Window, evidence: WindowEvidence
) -> LabelledNormal:
    frames = np.flatnonzero(window.labels == 0) if window.labels is not None else np.empty(0, int)
    appearance_normal = metadata.get("stream_stats", {}).get("appearance")
    if model.exception is None or len(frames) == 0:
        return LabelledNormal(frames, evidence.maps[frames], appearance_normal)
    plain = TorchDetector(_without_exception(model), metadata)
    maps = []
    for start in range(0, len(frames), BATCH):
        part = frames[start : start + BATCH]
        maps.append(half_maps(plain, window.stream_maps(plain, part), window.camera_of(part)))
    return LabelledNormal(frames, np.concatenate(maps), appearance_normal)


def _adapted_candidates(
    model: DetectorNet,
    metadata: dict[str, Any],
    window: Window,
    evidence: WindowEvidence,
    mined: MinedSet,
    labelled: LabelledNormal,
    replay: list[np.ndarray],
    config: SelfTrainConfig,
    rng: np.random.Generator,
    adaptation: dict[str, Any],
) -> tuple[DetectorNet, list[DetectorNet], dict[str, Any]]:
    """The model adapted to the mined frames, the candidates to validate in turn (with the ordinal head's
    round first when it applies: refused, the plain adaptation may still serve), and their metadata (the
    cameras' own views adapted too). Writes what each step did to `adaptation`."""
    adapted = copy.deepcopy(model).eval()
    if adapted.motion is not None:
        adapt_motion(adapted, window, mined, config)
        views, adaptation["camera_views_adapted"] = adapt_view_motion(
            metadata, window, mined, config, model.config
        )
        metadata = {**metadata, **views}
    if adapted.appearance is not None:
        adaptation["cells_offered"] = adapt_appearance(adapted, window, mined, config, rng)
    if adapted.prediction is not None:
        adaptation["prediction"] = fine_tune_prediction(adapted, window, mined, replay, config, rng)
    if len(labelled.frames):
        # what an operator said is normal is learned whatever the mining made of it
        clips = window.clips(labelled.frames, adapted.config.history)
        adaptation["labelled_normal"] = learn_labelled_normal(
            adapted,
            clips,
            config.labels,
            labelled_events(labelled.frames, window.segments),
            labelled.maps,
            window.accepted[labelled.frames] if window.accepted is not None else None,
            labelled.appearance_normal,
            window.kinds[labelled.frames] if window.kinds is not None else None,
        )
    candidates = [adapted]
    labelled_anomalies = window.labels is not None and bool((window.labels == 1).any())
    if adapted.appearance is not None and (
        adapted.ordinal is not None
        or config.ordinal_head == "always"
        or (config.ordinal_head == "labels" and labelled_anomalies)
    ):
        # the head's round is tried first; refused, the cycle's other adaptation may still serve
        scored = with_ordinal(adapted)
        examples = cell_examples(scored, window, mined, evidence.maps, config.ordinal, rng)
        adaptation["ordinal"] = train_ordinal(scored, examples, config.ordinal)
        candidates.insert(0, scored)
    return adapted, candidates, metadata


def _log_verdict(window: Window, mined: MinedSet, validation: Validation, kind: str) -> None:
    log.info(
        "cycle over %d frames: mined %s, %s candidate %s: %s",
        len(window),
        mined.counts(),
        kind,
        "accepted" if validation.accepted else "rejected",
        validation.reason,
    )


def child_metadata(
    candidate: DetectorNet, metadata: dict[str, Any], selftrain: dict[str, Any]
) -> dict[str, Any]:
    """The metadata of a candidate descended from the model whose `metadata` (statistics) it keeps."""
    return {
        **metadata,
        **model_metadata(candidate.config, {}),  # streams and the exception may have grown
        "version": new_version(list(candidate.config.streams)),
        "parent": metadata["version"],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "selftrain": selftrain,
    }


def _refused(
    model: DetectorNet,
    metadata: dict[str, Any],
    window: Window,
    mined: MinedSet,
    labelled: LabelledNormal,
    config: SelfTrainConfig,
    report: dict[str, Any],
    reason: str,
) -> CycleResult:
    """A cycle whose adaptation is refused: the kinds the site accepts served alone, or nothing."""
    return _accepted_kinds_only(model, metadata, window, labelled, config, report, reason) or CycleResult(
        False, reason, report, mined_normal=mined.normal, mined_abnormal=mined.abnormal
    )


def _accepted_kinds_only(
    model: DetectorNet,
    metadata: dict[str, Any],
    window: Window,
    labelled: LabelledNormal,
    config: SelfTrainConfig,
    report: dict[str, Any],
    refused: str,
) -> CycleResult | None:
    """Where the cycle's adaptation is refused (or there was too little to mine), the model in service
    with the window's frames of kinds the site accepts learned into its per-cell exception, and nothing
    else: the operator's word, served without waiting for a cycle whose mining validates. None when there
    are none, or they add nothing to what the exception keeps."""
    if window.kinds is None or not config.labels.accepted_exception or model.appearance is None:
        return None
    of_kind = window.kinds[labelled.frames] != 0
    accepted = labelled.frames[of_kind]
    if len(accepted) == 0:
        return None
    updated = copy.deepcopy(model).eval()
    # learned again, not taken from a refused candidate: its kept cells' speeds are above its adapted normal
    # speed (and, with LabelLearning.cell_exception, it keeps false alarms' cells too)
    learned = learn_labelled_normal(
        updated,
        window.clips(accepted, updated.config.history),
        config.labels,
        labelled_events(accepted, window.segments),
        labelled.maps[of_kind],
        np.ones(len(accepted), dtype=bool),
        labelled.appearance_normal,
        window.kinds[accepted],
    )
    if learned.get("cell_exception", {}).get("cells_kept", 0) == model.config.exception_cells:
        return None  # the same labels as before: nothing new to serve
    report["accepted_kinds_only"] = learned
    child = child_metadata(updated, metadata, {"config": config.to_dict(), "accepted_kinds_only": True})
    reason = f"kinds the site accepts learned into the per-cell exception (the cycle's adaptation: {refused})"
    log.info("cycle over %d frames: %s", len(window), reason)
    return CycleResult(True, reason, report, updated, child)


def withdrawn_kinds(
    model: DetectorNet, metadata: dict[str, Any], accepted: set[str], config: SelfTrainConfig
) -> CycleResult | None:
    """The model without its per-cell exception's cells of kinds the site no longer accepts (`accepted`:
    the categories that labels in force still accept), and nothing else changed: an operator who deletes
    or relabels a kind's labels takes it back without a rollback. None when no cell is of such a kind."""
    updated = copy.deepcopy(model).eval()
    withdrawn = withdraw_kinds(updated, accepted, config.labels)
    if withdrawn is None:
        return None
    report = {"withdrawn_kinds": withdrawn}
    child = child_metadata(updated, metadata, {"config": config.to_dict(), "withdrawn_kinds": True})
    reason = (
        f"{withdrawn['cells_withdrawn']} cells of kinds no label accepts any longer taken out of the "
        f"per-cell exception ({withdrawn['cells_kept']} kept)"
    )
    log.info("%s", reason)
    return CycleResult(True, reason, report, updated, child)


def silenced_place(
    model: DetectorNet,
    metadata: dict[str, Any],
    config: SelfTrainConfig,
    place_z: float,
    camera: str | None = None,
) -> CycleResult:
    """The model with its place map silenced and nothing else changed: a map of where the old view's
    paths were fires on a moved view's every walker, and the loop then takes the moved camera for another
    site (Ped2's site change, README). `camera` None (the whole window's view moved): the map says
    nothing is rare anywhere, until a fresh fit (a cycle's refit, a replacement) learns the new view's.
    `camera`: the one of several whose own frames showed it; the map is silenced for that camera alone
    (DetectorInfo.place_silenced_cameras), in this model and its descendants, and goes on scoring the
    others, whose views it knows."""
    updated = copy.deepcopy(model).eval()
    assert updated.place is not None
    child = child_metadata(updated, metadata, {"config": config.to_dict(), "place_silenced": True})
    if camera is None:
        updated.place.fit(
            np.zeros(tuple(updated.place.rarity.shape), dtype=np.float32), float(updated.place.typical)
        )
        reason = "the place map silenced: even the window's quietest quarter moved"
    else:
        child[PLACE_SILENCED_CAMERAS] = sorted({*child.get(PLACE_SILENCED_CAMERAS, ()), camera})
        reason = f"the place map silenced for camera {camera}: even its own quietest quarter moved"
    reason += f" where the map says nothing does (z {place_z:.1f} over its gate)"
    log.warning("%s", reason)  # a camera that moved: something an operator wants to know
    report = {"place_quiet_z": round(place_z, 3), **({} if camera is None else {"camera": camera})}
    return CycleResult(True, reason, report, updated, child)


def _with_exception_of(candidate: DetectorNet, in_service: DetectorNet) -> DetectorNet:
    """The candidate with the per-cell exception of the model in service (a copy; itself when both have
    none). It is how validation judges a candidate: what the candidate's exception adds was learned from
    frames an operator labelled a kind the site accepts, and the mined anomalies of that kind it takes
    out do not count against it, as labels override mining."""
    if candidate.exception is None and in_service.exception is None:
        return candidate
    judged = copy.deepcopy(candidate).eval()
    judged.copy_exception_from(in_service)
    return judged


def _without_exception(model: DetectorNet) -> DetectorNet:
    plain = copy.deepcopy(model).eval()
    plain.set_exception(torch.zeros(0, 1), torch.zeros(0), 1.0, 0.0)
    return plain


def _validated(
    candidate: DetectorNet,
    metadata: dict[str, Any],
    current: Detector,
    window: Window,
    mined: MinedSet,
    config: SelfTrainConfig,
    anchors: np.ndarray | None,
    judged: DetectorNet | None = None,
) -> tuple[dict[str, Any], Validation]:
    """The candidate's metadata (statistics refitted) and its validation against the model in service
    (with the anomalies set apart from `anchors`, the model's own footage, when given), as `judged` (the
    candidate itself when not given) scores."""
    structure = {**metadata, **model_metadata(candidate.config, {})}  # streams may have grown
    refitted, normal_reference = refit_statistics(
        TorchDetector(candidate, structure), current, window, mined.calibration, config.prior_frames
    )
    candidate_metadata = child_metadata(
        candidate, {**metadata, **refitted}, {"config": config.to_dict(), "mined": mined.counts()}
    )
    validation = validate(
        current,
        TorchDetector(judged if judged is not None else candidate, candidate_metadata),
        window,
        mined,
        config,
        normal_reference,
        anchors,
    )
    return candidate_metadata, validation
