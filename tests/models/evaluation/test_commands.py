"""`vigil train` and `vigil eval` handlers on a tiny generated dataset (small analysis size via settings)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.detector import fitting
from models.detector.runtime import TorchDetector, load_detector
from models.evaluation.datasets import CAMERAS_FILE, list_videos
from models.scoring.sampling import sampled_frames
from service.cli.commands import eval as eval_command
from service.cli.commands import train as train_command
from tests.models.conftest import HEIGHT, WIDTH, synthetic_video
from workers.config import get_settings
from workers.ingest.clips import write_clip


@pytest.fixture(autouse=True)
def small_analysis_size(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VIGIL_ANALYSIS__HEIGHT", str(HEIGHT))
    monkeypatch.setenv("VIGIL_ANALYSIS__WIDTH", str(WIDTH))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    train_command.register(subparsers)
    eval_command.register(subparsers)
    args = parser.parse_args(argv)
    return args.handler(args)


def outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Where an eval writes its scores, report and alerts."""
    return tmp_path / "scores.csv", tmp_path / "report.json", tmp_path / "alerts.csv"


def eval_args(model: Path, tmp_path: Path) -> tuple[str, ...]:
    scores, report, alerts = outputs(tmp_path)
    return (
        "--model",
        str(model),
        "--scores-out",
        str(scores),
        "--report",
        str(report),
        "--alerts-out",
        str(alerts),
    )


def test_train_then_eval_writes_every_test_frame(dataset_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    assert run("train", str(dataset_dir), "--out", str(model), "--threads", "1") == 0
    assert model.is_file() and (tmp_path / "model.pt").is_file()  # the weights self-training adapts
    assert load_detector(model, "cpu").info.metadata["detector"]["flow"]["finest_scale"] == 0  # native size
    scores, report, alerts = outputs(tmp_path)
    assert run("eval", str(dataset_dir), "--mode", "oneclass", *eval_args(model, tmp_path)) == 0
    assert next(csv.reader(alerts.open())) == ["video", "start_frame", "end_frame", "peak_score"]
    rows = list(csv.DictReader(scores.open()))
    assert [(r["video"], int(r["frame"])) for r in rows] == [("01", i) for i in range(24)] + [
        ("02", i) for i in range(20)
    ]
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    figures = json.loads(report.read_text())
    assert 0.0 <= figures["metrics"]["micro_auc"] <= 1.0
    assert 0.0 <= figures["events"]["event_recall"] <= 1.0 and figures["events"]["fps"] == 10.0
    assert figures["timings"]["frames"] == 44 and figures["machine"]["cores"]


def test_eval_reports_several_datasets_in_one_run(
    dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    shutil.copytree(dataset_dir, other)
    model, report = tmp_path / "model.onnx", tmp_path / "report.json"
    assert run("train", str(dataset_dir), "--out", str(model), "--threads", "1") == 0
    capsys.readouterr()
    code = run(
        "eval", str(dataset_dir), str(other), "--model", str(model), "--report", str(report),
        "--alerts-out", str(tmp_path / "alerts.csv"),
    )  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "| dataset | micro AUC (causal) |" in table and f"| {dataset_dir.name} |" in table
    figures = json.loads(report.read_text())
    assert set(figures["datasets"]) == {dataset_dir.name, "other"} and figures["machine"]["cores"]
    assert figures["datasets"]["other"]["metrics"]["micro_auc"] == pytest.approx(
        figures["datasets"][dataset_dir.name]["metrics"]["micro_auc"]
    )  # the same frames, the same model
    assert (tmp_path / "alerts-other.csv").is_file()
    assert (tmp_path / f"alerts-{dataset_dir.name}.csv").is_file()


def test_eval_trains_when_no_model_is_given(dataset_dir: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved.pt"
    assert (
        run(
            "eval",
            str(dataset_dir),
            "--streams",
            "motion,appearance,prediction",
            "--epochs",
            "1",
            "--save-model",
            str(saved),
            "--seed",
            "3",
            "--train-videos",
            "1",
        )
        == 0
    )
    detector = load_detector(saved)
    assert isinstance(detector, TorchDetector) and detector.info.streams == [
        "motion",
        "appearance",
        "prediction",
    ]
    assert float(detector.model.prediction.baseline.sum()) > 0  # its normal error per pixel is subtracted
    assert float(detector.model.motion.normal_speed.sum()) > 0  # the normal speed per pixel too
    assert detector.info.metadata["training"]["videos"] == 1 and detector.info.metadata["calibration"]


def test_clear_errors(dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("eval", str(tmp_path / "missing"), "--model", str(tmp_path / "m.onnx")) == 2
    assert "vigil eval:" in capsys.readouterr().err
    assert run("eval", str(dataset_dir), "--mode", "coldstart", "--model", str(tmp_path / "m.onnx")) == 2
    assert "coldstart starts with no model" in capsys.readouterr().err
    assert run("eval", str(dataset_dir), "--mode", "online", "--model", str(tmp_path / "m.onnx")) == 2
    assert "no such model file" in capsys.readouterr().err
    assert (
        run("train", str(dataset_dir), "--out", str(tmp_path / "m.onnx"), "--streams", "motion,colour") == 2
    )
    assert "--streams: choose among" in capsys.readouterr().err
    (tmp_path / "broken.onnx").write_bytes(b"xx")
    assert run("eval", str(dataset_dir), "--model", str(tmp_path / "broken.onnx")) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err
    assert run("train", str(tmp_path / "missing"), "--out", str(tmp_path / "m.onnx"), "--epochs", "1") == 2
    assert "no such dataset directory" in capsys.readouterr().err
    assert run("train", str(dataset_dir), "--out", str(tmp_path / "m.bin")) == 2


def test_a_dataset_of_several_cameras_is_fitted_and_scored_as_each_camera(
    dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fitting, "MIN_VIEW_FRAMES", 20)  # the tiny dataset's 40 frames a camera learn a view
    cameras = {"videos": {"01": "north", "02": "south"}}  # training and testing videos of the same names
    (dataset_dir / CAMERAS_FILE).write_text(json.dumps(cameras))
    model = tmp_path / "model.onnx"
    assert run("train", str(dataset_dir), "--out", str(model), "--threads", "1") == 0
    assert set(load_detector(model, "cpu").info.camera_views) == {"north", "south"}
    scores = outputs(tmp_path)[0]
    assert run("eval", str(dataset_dir), *eval_args(model, tmp_path)) == 0  # each video as its camera
    by_camera = {row["frame"]: row["score"] for row in csv.DictReader(scores.open()) if row["video"] == "02"}
    assert run("eval", str(dataset_dir), *eval_args(model, tmp_path), "--camera", "north") == 0
    as_north = {row["frame"]: row["score"] for row in csv.DictReader(scores.open()) if row["video"] == "02"}
    assert by_camera != as_north  # test video 02 is south's: north's view scores it otherwise
    capsys.readouterr()
    assert run("eval", str(dataset_dir), *eval_args(model, tmp_path), "--camera", "gate") == 0
    assert "keeps no view of camera 'gate' (its cameras: north, south)" in capsys.readouterr().err
    assert run("eval", str(dataset_dir), "--mode", "coldstart", "--camera", "north") == 2
    assert "--camera scores a start model's view" in capsys.readouterr().err
    (dataset_dir / CAMERAS_FILE).write_text(json.dumps({"01": "north"}))
    assert run("eval", str(dataset_dir), "--model", str(model)) == 2
    assert "not a valid cameras file" in capsys.readouterr().err


def test_online_streams_each_video_as_its_camera(
    dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fitting, "MIN_VIEW_FRAMES", 20)  # the tiny dataset's 40 frames a camera learn a view
    (dataset_dir / CAMERAS_FILE).write_text(json.dumps({"videos": {"01": "north", "02": "south"}}))
    model = tmp_path / "model.pt"  # online fine-tunes PyTorch weights
    assert run("train", str(dataset_dir), "--out", str(model), "--threads", "1") == 0
    scores, report, _ = outputs(tmp_path)
    online = ("eval", str(dataset_dir), "--mode", "online", "--threads", "1", *eval_args(model, tmp_path))
    assert run(*online) == 0
    assert json.loads(report.read_text())["streamed_metrics"]["micro_auc"] > 0.5
    by_camera = {row["frame"]: row["score"] for row in csv.DictReader(scores.open()) if row["video"] == "02"}
    assert run(*online, "--camera", "north") == 0
    as_north = {row["frame"]: row["score"] for row in csv.DictReader(scores.open()) if row["video"] == "02"}
    assert by_camera != as_north  # test video 02 is south's: streamed in north's view, it scores otherwise
    capsys.readouterr()
    (dataset_dir / CAMERAS_FILE).write_text(json.dumps({"videos": {"01": "north"}}))
    assert run(*online) == 2
    assert "name every video's camera, or none" in capsys.readouterr().err


def recordings_dataset(root: Path) -> Path:
    """The tiny dataset with recordings beside frame folders: an MP4, an MKV and an AVI."""
    rng = np.random.default_rng(0)
    write_clip(root / "training" / "cam1.mp4", synthetic_video(40, rng), fps=10)
    (root / "training" / "02").mkdir(parents=True)
    for i, frame in enumerate(synthetic_video(40, rng)):
        cv2.imwrite(str(root / "training" / "02" / f"{i:03d}.png"), frame)
    write_clip(root / "testing" / "01.mkv", synthetic_video(24, rng, anomaly=(12, 23)), fps=10)
    write_clip(root / "testing" / "02.avi", synthetic_video(20, rng), fps=10)
    labels = {"videos": {"01": {"frames": 24, "abnormal": [[12, 23]]}, "02": {"frames": 20, "abnormal": []}}}
    (root / "labels.json").write_text(json.dumps(labels))
    return root


def test_recordings_train_and_eval_beside_frame_folders(tmp_path: Path) -> None:
    dataset = recordings_dataset(tmp_path / "recorded")
    assert [(v.name, v.file is not None) for v in list_videos(dataset, "training")] == [
        ("02", False),
        ("cam1", True),
    ]
    model, scores, report = tmp_path / "model.onnx", tmp_path / "scores.csv", tmp_path / "report.json"
    assert run("train", str(dataset), "--out", str(model), "--threads", "1") == 0
    assert load_detector(model, "cpu").info.metadata["training"]["frames"] == 80  # every decoded frame
    args = ("--model", str(model), "--scores-out", str(scores), "--report", str(report))
    assert run("eval", str(dataset), "--mode", "oneclass", *args) == 0
    rows = [(r["video"], int(r["frame"])) for r in csv.DictReader(scores.open())]
    assert rows == [("01", i) for i in range(24)] + [("02", i) for i in range(20)]  # decode order
    assert 0.0 <= json.loads(report.read_text())["metrics"]["micro_auc"] <= 1.0


def test_footage_past_the_frame_budget_is_fitted_on_runs_spread_over_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = recordings_dataset(tmp_path / "recorded")  # 80 training frames: a folder and a recording
    model = tmp_path / "model.pt"
    with caplog.at_level(logging.INFO, logger="models.evaluation.jobs"):
        assert (
            run("train", str(dataset), "--out", str(model), "--footage-frames", "50", "--threads", "1") == 0
        )
    assert "holds 80 frames, more than the 50 a fit reads: reading 50 of them" in caplog.text
    assert load_detector(model, "cpu").info.metadata["training"]["frames"] == 50
    assert run("train", str(dataset), "--out", str(model), "--footage-frames", "0") == 2
    assert "--footage-frames must be at least 1" in capsys.readouterr().err


def test_the_flow_follows_the_dataset_s_frame_rate(dataset_dir: Path, tmp_path: Path) -> None:
    labels = json.loads((dataset_dir / "labels.json").read_text())
    (dataset_dir / "labels.json").write_text(json.dumps({**labels, "fps": 5}))  # a camera at 5 frames/s
    model = tmp_path / "model.pt"
    assert run("train", str(dataset_dir), "--out", str(model), "--threads", "1") == 0
    detector = load_detector(model, "cpu")
    assert detector.info.metadata["detector"]["flow"]["gap"] == 1 and detector.info.history == 1


def test_footage_faster_than_the_analysis_rate_is_fitted_and_scored_at_it(tmp_path: Path) -> None:
    """Recordings at 25 frames/s: fitted and scored on the frames a camera sampled at 10 frames/s keeps,
    the flow over 2 of them; the scores CSV covers every frame (a frame between two analysed ones holds
    the score before it), and alerts name frames by their index in the recording."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fast"
    write_clip(root / "training" / "01.mp4", synthetic_video(100, rng), fps=25)
    write_clip(root / "testing" / "01.mp4", synthetic_video(75, rng, anomaly=(40, 74)), fps=25)
    (root / "labels.json").write_text(json.dumps({"videos": {"01": {"frames": 75, "abnormal": [[40, 74]]}}}))
    model = tmp_path / "model.onnx"
    assert run("train", str(root), "--out", str(model), "--threads", "1") == 0
    detector = load_detector(model, "cpu")
    assert detector.info.metadata["training"]["frames"] == 40  # 4 s at 10 frames/s
    assert detector.info.metadata["detector"]["flow"]["gap"] == 2  # 0.2 s at the analysis rate
    scores, report, alerts = outputs(tmp_path)
    assert run("eval", str(root), "--mode", "oneclass", *eval_args(model, tmp_path)) == 0
    rows = list(csv.DictReader(scores.open()))
    assert [int(r["frame"]) for r in rows] == list(range(75))
    analysed = sampled_frames(75, 25.0, 10.0)
    assert len(analysed) == 30 and set(np.diff(analysed).tolist()) == {2, 3}
    held = [k for k in range(75) if k not in analysed]
    assert all(rows[k]["score"] == rows[k - 1]["score"] for k in held)
    figures = json.loads(report.read_text())
    assert figures["events"]["fps"] == 10.0 and figures["timings"]["frames"] == 30
    assert all(int(r["start_frame"]) in analysed for r in csv.DictReader(alerts.open()))


def test_unreadable_or_ambiguous_recordings_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = recordings_dataset(tmp_path / "recorded")
    (dataset / "training" / "03.mp4").write_bytes(b"not a video at all")
    assert run("train", str(dataset), "--out", str(tmp_path / "m.onnx")) == 2
    assert "03.mp4: not a readable video" in capsys.readouterr().err
    (dataset / "testing" / "01").mkdir()
    cv2.imwrite(str(dataset / "testing" / "01" / "000.png"), np.zeros((HEIGHT, WIDTH), np.uint8))
    assert run("eval", str(dataset), "--mode", "oneclass", "--model", str(tmp_path / "none.onnx")) == 2
    assert "two videos named '01'" in capsys.readouterr().err
