"""A camera's alert threshold raised by its operators' verdicts on its alerts: an alert-fatigue control.

An operator who marks an alert normal without naming what it showed (no category) says the camera paged on
nothing: Vigil then asks for stronger evidence on that camera than the marked alert had, so that an alert as
weak as it does not page again. The rise is bounded twice: by a ceiling (the score at which a frame is z_mid
robust spreads above the camera's normal level, 0.5, by default), so that a marked strong false alert does
not silence the camera, and under the peak of every alert the operators confirmed as abnormal, so that
nothing they want paged is silenced. A label with a category (a kind of event accepted at the site, e.g.
cyclists) does not move the threshold: a threshold cannot tell one kind from another, and raising it
would silence the others (the README's Operator feedback measures both).

Derived from the labels alone, the threshold follows them: a relabelled or deleted label takes its effect
with it.
"""

from __future__ import annotations

from collections.abc import Iterable

LABEL_MARGIN = 0.01  # how far above a marked alert's peak the threshold goes, and under a confirmed one's


def label_threshold(
    normal_peaks: Iterable[float], abnormal_peaks: Iterable[float], ceiling: float
) -> float | None:
    """The threshold a camera's labelled alerts ask for, or None when they ask for none.

    normal_peaks: peak scores of the camera's alerts marked normal without a category; abnormal_peaks: of
    those marked abnormal; ceiling: the highest threshold labels may set (0: labels never set one). The
    camera's threshold in force is the larger of this and the one it would have without labels."""
    normal, abnormal = list(normal_peaks), list(abnormal_peaks)
    if ceiling <= 0 or not normal:
        return None
    threshold = min(max(normal) + LABEL_MARGIN, ceiling)
    if abnormal:
        threshold = min(threshold, min(abnormal) - LABEL_MARGIN)
    return threshold if threshold > 0 else None
