"""The per-cell exception: cells that look and move like a kept one lose their evidence, with their
neighbours, and nothing else does; in PyTorch and in the exported ONNX graph alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.detector.exception import CellException
from models.detector.export import model_metadata, save_detector
from models.detector.runtime import TorchDetector, load_detector
from models.detector.streams import DetectorConfig, DetectorNet
from models.selftrain.ordinal import cell_evidence
from tests.models.conftest import HEIGHT, TINY_DETECTOR, WIDTH

KEPT = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # two channels and the weighted speed


def exception(reach: float = 0.0, ratio: float = 0.0, spread: int = 1, weight: float = 1.0) -> CellException:
    module = CellException(channels=2, cells=len(KEPT), spread=spread)
    module.set_kept(KEPT * torch.tensor([1.0, 1.0, weight]), torch.tensor([0, 1]), weight, reach, ratio)
    return module


def grid(
    cells: dict[tuple[int, int], tuple[float, float, float]], memory: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """features [1, 2, 6, 6], speed [1, 6, 6] and the distance to the memory [1, 6, 6]: zero features and
    speed but at `cells` ((row, col): (f0, f1, speed)), `memory` everywhere."""
    features, speed = torch.zeros(1, 2, 6, 6), torch.zeros(1, 6, 6)
    for (row, col), (f0, f1, s) in cells.items():
        features[0, :, row, col] = torch.tensor([f0, f1])
        speed[0, row, col] = s
    return features, speed, torch.full((1, 6, 6), memory)


def test_by_reach_a_cell_like_a_kept_one_and_its_neighbours_lose_their_evidence_and_nothing_else() -> None:
    cells = grid({(2, 2): (1.0, 0.0, 1.0), (5, 5): (0.0, 1.0, 3.0), (0, 5): (0.1, 0.9, 1.1)})
    keep = exception(reach=0.5)(*cells)[0]
    expected = torch.ones(6, 6)
    expected[1:4, 1:4] = 0  # the kept look at the kept speed, grown by a cell
    expected[0:2, 4:6] = 0  # near enough the other kept one
    # (5, 5) looks like the second kept cell but moves two units faster; the zero cells are still
    assert torch.equal(keep, expected)
    without_spread = exception(reach=0.5, spread=0)(*cells)[0]
    assert without_spread[2, 2] == without_spread[0, 5] == 0 and without_spread.sum() == 34


def test_by_reach_the_speed_counts_by_its_weight_and_a_zero_reach_excepts_nothing() -> None:
    # at weight 0.1 the kept cells' speed 1 is 0.1 and the cell's 3 is 0.3: 0.2 away, within 0.5
    assert exception(reach=0.5, weight=0.1)(*grid({(5, 5): (0.0, 1.0, 3.0)}))[0, 5, 5] == 0
    assert bool((exception(reach=0.0)(*grid({(2, 2): (1.0, 0.0, 1.0)})) == 1).all())


@pytest.mark.parametrize(("memory", "taken"), [(0.5, False), (2.0, True)])
def test_by_ratio_a_cell_is_taken_where_it_looks_more_like_a_kept_one_than_like_the_memory(
    memory: float, taken: bool
) -> None:
    # 0.71 from either kept cell's features, whatever it moves like; the zero cells lie 1 from them and
    # 0.5 from the memory
    features, speed, memory_distance = grid({(2, 2): (0.5, 0.5, 9.0)}, memory=0.5)
    memory_distance[0, 2, 2] = memory
    keep = exception(ratio=0.9, spread=0)(features, speed, memory_distance)[0]
    expected = torch.ones(6, 6)
    expected[2, 2] = 0 if taken else 1
    assert torch.equal(keep, expected)


def test_only_a_cell_as_unusual_as_the_seed_is_taken_and_its_neighbours_go_with_it() -> None:
    # two cells that look like the first kept one (by ratio): the usual one (0.5 from the memory, under
    # the seed 1.0) stays, the unusual one (2.0) goes with the cells around it
    features, speed, memory_distance = grid({(1, 1): (1.0, 0.0, 1.0), (4, 4): (1.0, 0.0, 1.0)}, memory=0.5)
    memory_distance[0, 4, 4] = 2.0
    module = exception(ratio=0.9, spread=1)
    module.set_kept(KEPT, torch.tensor([0, 1]), 1.0, 0.0, 0.9, seed=1.0)
    keep = module(features, speed, memory_distance)[0]
    expected = torch.ones(6, 6)
    expected[3:6, 3:6] = 0
    assert torch.equal(keep, expected)


def test_a_model_file_from_before_the_seed_takes_every_matching_cell() -> None:
    state = exception(ratio=0.9).state_dict()
    del state["seed"]
    module = CellException(channels=2, cells=len(KEPT))
    module.load_state_dict(state)
    assert float(module.seed) == 0.0 and float(module.ratio) == pytest.approx(0.9)


def test_a_model_file_from_before_kinds_knows_no_kind_of_its_cells() -> None:
    kept = exception(ratio=0.9)
    kept.set_kept(KEPT, torch.tensor([0, 1]), 1.0, 0.0, 0.9, kinds=torch.tensor([5, 6]))
    state = kept.state_dict()
    assert state["kinds"].tolist() == [5, 6]
    del state["kinds"]
    module = CellException(channels=2, cells=len(KEPT))
    module.load_state_dict(state)
    assert module.kinds.tolist() == [0, 0]


def test_kept_cells_are_checked() -> None:
    with pytest.raises(ValueError, match="descriptors"):
        CellException(channels=2, cells=1).set_kept(torch.zeros(2, 4), torch.zeros(2), 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="kinds"):
        CellException(channels=2, cells=2).set_kept(
            torch.zeros(2, 3), torch.zeros(2), 1.0, 1.0, 0.0, kinds=torch.zeros(1)
        )


def excepting_net(test: str = "reach", seed: int = 0) -> tuple[DetectorNet, np.ndarray, torch.Tensor]:
    """A tiny untrained net, clips of a bright square moving on noise, and the keep map of an exception
    that keeps the descriptors of the square's cells in the last clip."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = DetectorNet(TINY_DETECTOR).eval()
    net.motion.normal_speed.fill_(0.1)
    clips = rng.integers(100, 140, (3, TINY_DETECTOR.history + 1, HEIGHT, WIDTH)).astype(np.uint8)
    for index in range(len(clips)):
        for t in range(clips.shape[1]):
            clips[index, t, 8:16, 4 + 4 * t + 8 * index : 12 + 4 * t + 8 * index] = 250
    background = rng.integers(100, 140, (4, TINY_DETECTOR.history + 1, HEIGHT, WIDTH)).astype(np.uint8)
    normal = cell_evidence(net, background)[0]  # the memory of normal footage: the noise
    net.remember(normal.permute(0, 2, 3, 1).reshape(-1, normal.shape[1]))
    features, speed = cell_evidence(net, clips[-1:])
    joint = torch.cat([features, speed[:, None]], 1)[0].flatten(1).t()
    square = joint.reshape(HEIGHT // 8, WIDTH // 8, -1)[1, 2:4]  # the square's cells in the last clip
    if test == "reach":
        net.set_exception(square, torch.tensor([0, 1]), speed_weight=1.0, reach=1e-3, spread=1)
    else:
        net.set_exception(square, torch.tensor([0, 1]), speed_weight=1.0, reach=0.0, ratio=0.5, spread=1)
    keep = net.exception(features, speed, net.appearance.cell_distances(features))
    return net, clips, keep


@pytest.mark.parametrize("test", ["reach", "ratio"])
def test_a_net_with_an_exception_zeroes_its_maps_there_only_and_exports_it(tmp_path: Path, test: str) -> None:
    net, clips, keep = excepting_net(test)
    expected = torch.ones(HEIGHT // 8, WIDTH // 8)
    expected[0:3, 1:5] = 0  # the square's two cells, grown by a cell (its noise background is unlike it)
    assert net.config.exception_cells == 2 and torch.equal(keep[0], expected)
    plain = DetectorNet(DetectorConfig.from_dict({**net.config.to_dict(), "exception_cells": 0})).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("exception.")})
    metadata = model_metadata(net.config, {"version": "test"})
    torch_maps = TorchDetector(net, metadata).stream_maps(clips)
    plain_maps = TorchDetector(plain, metadata).stream_maps(clips)
    cut = np.kron(keep[0].numpy(), np.ones((8, 8))) == 0  # the last clip's excepted pixels
    assert (torch_maps[-1][:, cut] == 0).all() and (plain_maps[-1][:, cut] > 0).any()
    np.testing.assert_allclose(torch_maps[-1][:, ~cut], plain_maps[-1][:, ~cut], atol=1e-5)
    for suffix in (".onnx", ".pt"):  # as served, and as self-training keeps it
        path = tmp_path / f"model{suffix}"
        save_detector(net, metadata, path)
        loaded = load_detector(path, "cpu")
        maps = loaded.stream_maps(clips)
        assert (maps[-1][:, cut] == 0).all()
        np.testing.assert_allclose(maps, torch_maps, atol=1e-3)


def test_removing_the_exception_restores_the_plain_net() -> None:
    net, _, _ = excepting_net()
    net.set_exception(torch.zeros(0, 33), torch.zeros(0), 1.0, 1.0)
    assert net.exception is None and net.config.exception_cells == 0


def test_a_copied_exception_scores_as_its_source_and_shares_nothing_with_it() -> None:
    source, clips, _ = excepting_net("ratio")
    features, speed = cell_evidence(source, clips)
    distances = source.appearance.cell_distances(features)
    # every setting a value of its own, to be carried over (a seed that still takes the square's cells)
    source.exception.seed.fill_(float(distances.min()))
    plain = DetectorConfig.from_dict({**source.config.to_dict(), "exception_cells": 0, "exception_spread": 0})
    candidate = DetectorNet(plain).eval()
    candidate.load_state_dict(
        {k: v for k, v in source.state_dict().items() if not k.startswith("exception.")}
    )
    candidate.copy_exception_from(source)
    assert candidate.config == source.config and candidate.exception is not None
    before = source.exception(features, speed, distances)
    assert (before == 0).any()
    assert torch.equal(candidate.exception(features, speed, distances), before)
    metadata = model_metadata(source.config, {"version": "test"})
    np.testing.assert_allclose(  # the same maps (to the flow's float noise between two runs)
        TorchDetector(candidate, metadata).stream_maps(clips),
        TorchDetector(source, metadata).stream_maps(clips),
        atol=1e-6,
    )
    for name, buffer in source.exception.named_buffers():
        copied = getattr(candidate.exception, name)
        assert torch.equal(copied, buffer) and copied.data_ptr() != buffer.data_ptr()
    candidate.exception.kept.zero_()  # one changed, in its buffers and its settings ...
    candidate.exception.ratio.fill_(0.0)
    candidate.exception.spread = 0
    assert torch.equal(source.exception(features, speed, distances), before)  # ... the other is not
    assert not torch.equal(candidate.exception(features, speed, distances), before)
    source.exception.seed.fill_(1e6)  # and the other way round
    assert float(candidate.exception.seed) == pytest.approx(float(distances.min()))
    candidate.copy_exception_from(DetectorNet(plain))  # a source without one removes it
    assert candidate.exception is None and candidate.config == plain
