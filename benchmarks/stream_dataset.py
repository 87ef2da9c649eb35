"""A dataset that streams like a site: mostly normal footage with the events among it (the feedback and alert
benchmarks' held-out streams: `python benchmarks/bench_feedback.py stream-dataset SOURCE OUT --fitted N`)."""

from __future__ import annotations

import json
from pathlib import Path

from models.evaluation import datasets


def write_stream_dataset(source: Path, out: Path, fitted: int, every: int) -> None:
    """A dataset whose testing/ is a stream that is mostly normal: SOURCE's test videos with its training
    videos after the first `fitted` streamed between them (one after every `every` test videos, in name
    order), linked, not copied; its training/ is SOURCE's (fit it with `vigil eval --train-videos FITTED`)."""
    labels = json.loads((source / "labels.json").read_text())["videos"]
    tests = [v.name for v in datasets.list_videos(source, "testing")]
    held = iter([v.name for v in datasets.list_videos(source, "training")][fitted:])
    order: list[tuple[str, str]] = []
    for index, name in enumerate(tests):
        order.append(("testing", name))
        if index % every == every - 1 and (spare := next(held, None)) is not None:
            order.append(("training", spare))
    (out / "testing").mkdir(parents=True)
    (out / "training").symlink_to((source / "training").resolve())
    videos = {}
    for position, (split, name) in enumerate(order, start=1):
        stream_name = f"s{position:02d}-{'test' if split == 'testing' else 'train'}{name}"
        (out / "testing" / stream_name).symlink_to((source / split / name).resolve())
        videos[stream_name] = {"abnormal": labels[name]["abnormal"] if split == "testing" else []}
    description = f"{source.name}: training videos after the first {fitted} streamed between the test videos"
    (out / "labels.json").write_text(json.dumps({"dataset": description, "videos": videos}, indent=1))
