"""An upper bound for self-training: `vigil eval --mode online` with the mining told the truth.

The loop's gain is bounded by what it learns from: mined "normal" frames that hold anomalies teach the
model those anomalies. This runs the loop's own code (`SelfTrainer`, `stream_online`, the cycle) with one
change: labels.json (which the loop never sees otherwise) decides which frames the mining's normal rule
may keep.

- clean: the rule's own picks, less those that labels.json calls abnormal (the same rule, made precise);
- all: every frame labels.json calls normal is a candidate (precise, and as many as there are);
- labelled: all, and an operator who labels every abnormal frame of each window as abnormal: labels
  override mining, so that every anomaly in the window is mined (masked where the model's evidence is)
  and trains the ordinal head. What the loop could learn from the stream with mining and labels both
  perfect (frames labelled normal would leave none held out to validate a candidate on).

What a cycle does with its mined frames (the memory's new cells, the normal speed, the statistics,
validation) is unchanged, so the gap between these runs and the plain one is what cleaner mining could win.

    python benchmarks/oracle_mining.py clean ../shared/datasets/ped1 --model PED1.pt --report R.json

The arguments after the variant are `vigil eval`'s; the mode is online.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from models.evaluation import datasets, online  # noqa: E402
from models.selftrain import cycle, mining  # noqa: E402
from models.selftrain.config import Window  # noqa: E402
from service.cli.main import main as vigil  # noqa: E402

VARIANTS = ("clean", "all", "labelled")


def told_the_truth(variant: str, dataset: Path) -> None:
    """Patches the loop so that each window's normal candidates follow labels.json."""
    testing = datasets.list_videos(dataset, "testing")
    labels = datasets.load_labels(dataset, {v.name: v.frames for v in testing})
    if labels is None:
        raise SystemExit(f"{dataset}: no labels.json to tell the mining the truth")
    truth: dict[str, np.ndarray | None] = {"normal": None}
    window_of, mine, normal_rule = online._Seen.window, cycle.mine, mining.localized_normal_frames

    def window(seen: Any, count: int) -> Window:  # each window knows which of its frames are abnormal
        chosen = window_of(seen, count)
        abnormal = np.array([labels[v][i] for v, i in seen.ids[-count:]], dtype=bool)
        chosen.abnormal = abnormal  # type: ignore[attr-defined]
        if variant == "labelled":
            chosen.labels = np.where(abnormal, 1, -1)
        return chosen

    def mine_told(chosen: Window, *args: Any, **kwargs: Any) -> Any:
        abnormal = getattr(chosen, "abnormal", None)
        truth["normal"] = None if abnormal is None else ~abnormal
        return mine(chosen, *args, **kwargs)

    def normal_told(*args: Any, **kwargs: Any) -> np.ndarray:
        picks = normal_rule(*args, **kwargs)
        normal = truth["normal"]
        if normal is None or len(normal) != len(picks):
            return picks
        return picks & normal if variant == "clean" else normal.copy()

    online._Seen.window = window  # type: ignore[method-assign]
    cycle.mine = mine_told
    mining.localized_normal_frames = normal_told


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("dataset", type=Path)
    args, rest = parser.parse_known_args()
    told_the_truth(args.variant, args.dataset)
    return vigil(["eval", str(args.dataset), "--mode", "online", *rest])


if __name__ == "__main__":
    sys.exit(main())
