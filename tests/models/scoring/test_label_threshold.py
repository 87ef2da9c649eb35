import pytest

from models.scoring.label_threshold import LABEL_MARGIN, label_threshold


def test_no_label_asks_for_no_threshold() -> None:
    assert label_threshold([], [], 0.5) is None
    assert label_threshold([], [0.9], 0.5) is None  # confirmed alerts alone raise nothing


def test_a_marked_alert_would_not_page_again() -> None:
    assert label_threshold([0.3, 0.22], [], 0.5) == pytest.approx(0.3 + LABEL_MARGIN)


def test_a_strong_false_alert_raises_the_threshold_to_the_ceiling_only() -> None:
    assert label_threshold([0.6], [], 0.5) == 0.5


def test_confirmed_alerts_keep_paging() -> None:
    assert label_threshold([0.45], [0.4, 0.8], 0.5) == pytest.approx(0.4 - LABEL_MARGIN)


def test_a_zero_ceiling_turns_labels_off() -> None:
    assert label_threshold([0.3], [], 0.0) is None


def test_a_bound_under_zero_is_no_threshold() -> None:
    assert label_threshold([0.3], [0.005], 0.5) is None
