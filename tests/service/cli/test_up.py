"""`vigil up`'s own help says what an operator needs before starting it."""

from __future__ import annotations

import pytest

from service.cli.main import build_parser


def test_up_help_says_how_camera_ids_are_chosen(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("up").parse_args(["up", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "its id is the source's name" in text and "else cam1, cam2" in text
