"""Frame sources: video files, folders of frame images, and live streams (RTSP, HTTP) through PyAV.

`open_source(source)` returns a `FrameSource` whose `frames()` yields `DecodedFrame`s with their
presentation time; the camera loop samples them to the analysis fps (`FpsSampler`) and converts only
the frames it keeps (`analysis()` / `display_jpeg()`), so decoding at a high native rate stays cheap.
Every error message names the source without credentials.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

from workers.proc.redaction import redact

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
JPEG_QUALITY = 80
# TCP: no lost UDP packets; socket timeout in µs
RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}
# probe 1 s of a live stream, not FFmpeg's 5 s: faster (re)connects
LIVE_OPTIONS = {"analyzeduration": "1000000"}


SECRETS_DIR = Path("/run/secrets")  # where container secrets appear
_CREDENTIAL_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SourceError(Exception):
    """A source cannot be opened or read; the message is safe to show (no credentials)."""


def is_live(source: str) -> bool:
    return source.lower().startswith(LIVE_SCHEMES)


def describe_error(exc: BaseException) -> str:
    """A short reason from a PyAV/OS error, without the file name FFmpeg appends."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror).rstrip(".").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return redact(str(exc)) or type(exc).__name__


class DecodedFrame(Protocol):
    time_s: float | None  # presentation time in the source, seconds; None when the source has none
    size: tuple[int, int]  # (height, width) as decoded, before any resize

    def analysis(self, width: int, height: int) -> np.ndarray:
        """Grayscale uint8 array of shape (height, width)."""
        ...

    def display_jpeg(self, width: int) -> bytes:
        """A color JPEG `width` pixels wide, aspect kept."""
        ...


def _display_height(width: int, src_width: int, src_height: int) -> int:
    return max(2, round(width * src_height / src_width / 2) * 2)


def _encode_jpeg(bgr: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise SourceError("JPEG encoding failed")
    return buffer.tobytes()


class AvFrame:
    def __init__(self, frame: av.VideoFrame) -> None:
        self.frame = frame
        self.time_s = frame.time
        self.size = (frame.height, frame.width)

    def analysis(self, width: int, height: int) -> np.ndarray:
        gray = self.frame.to_ndarray(width=width, height=height, format="gray")
        return np.ascontiguousarray(gray[:height, :width])

    def display_jpeg(self, width: int) -> bytes:
        height = _display_height(width, self.frame.width, self.frame.height)
        return _encode_jpeg(self.frame.to_ndarray(width=width, height=height, format="bgr24"))


class ImageFrame:
    def __init__(self, bgr: np.ndarray, time_s: float) -> None:
        self.bgr = bgr
        self.time_s = time_s
        self.size = (bgr.shape[0], bgr.shape[1])

    def analysis(self, width: int, height: int) -> np.ndarray:
        gray = cv2.cvtColor(self.bgr, cv2.COLOR_BGR2GRAY)
        return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)

    def display_jpeg(self, width: int) -> bytes:
        height = _display_height(width, self.bgr.shape[1], self.bgr.shape[0])
        return _encode_jpeg(cv2.resize(self.bgr, (width, height), interpolation=cv2.INTER_AREA))


class FrameSource(Protocol):
    live: bool  # a stream without an end: not paced, and its end is a disconnect
    description: str  # the source as it may be shown: credentials removed

    def frames(self) -> Iterator[DecodedFrame]:
        """Decoded frames in order; ends at end of file, or when a live stream stops sending."""
        ...

    def close(self) -> None: ...


class AvSource:
    """A video file or a network stream decoded by PyAV (FFmpeg)."""

    def __init__(self, source: str, *, open_timeout_s: float = 5.0, recording: bool = False) -> None:
        self.live = is_live(source)
        self.description = redact(source)
        if not self.live and not Path(source).is_file():
            raise SourceError(f"cannot open {self.description}: no such file")
        if not self.live and Path(source).stat().st_size == 0:
            raise SourceError(f"cannot open {self.description}: empty file")
        options = dict(LIVE_OPTIONS) if self.live else {}
        if source.lower().startswith(("rtsp://", "rtsps://")):
            options |= RTSP_OPTIONS | {"timeout": str(int(open_timeout_s * 1_000_000))}
        started = time.monotonic()
        try:
            self.container = av.open(source, options=options, timeout=(open_timeout_s, open_timeout_s))
        except (av.FFmpegError, OSError) as exc:
            if self.live and time.monotonic() - started >= 0.9 * open_timeout_s:
                reason = f"no answer within {open_timeout_s:g} s"  # FFmpeg reports a timeout as bad data
            else:
                reason = describe_error(exc)
            raise SourceError(f"cannot open {self.description}: {reason}") from exc
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"cannot open {self.description}: no video stream")
        # only the operator's word makes a network source a recording (paced, then finished): RTSP servers
        # playing footage announce a duration, and a camera's stream that ends is still a disconnect
        self.live = self.live and not recording
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"

    def frames(self) -> Iterator[DecodedFrame]:
        try:
            for frame in self.container.decode(self.stream):
                yield AvFrame(frame)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"error reading {self.description}: {describe_error(exc)}") from exc

    def close(self) -> None:
        self.container.close()


class FolderSource:
    """A folder of frame images in sorted file-name order, timed at `fps`."""

    live = False

    def __init__(self, folder: str, fps: float) -> None:
        self.description = folder
        self.fps = fps
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"cannot open {folder}: no frame images (*.jpg, *.png) in the folder")

    def frames(self) -> Iterator[DecodedFrame]:
        for index, path in enumerate(self.paths):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SourceError(f"error reading {self.description}: cannot decode {path.name}")
            yield ImageFrame(bgr, index / self.fps)

    def close(self) -> None:
        """Nothing is held open between frames."""


def expand_credentials(source: str, secrets_dir: Path = SECRETS_DIR) -> str:
    """`${NAME}` in a source, filled in from the environment variable NAME, else the file secrets_dir/NAME.

    Only done when a stream is opened: configs in Redis, API answers and logs keep the `${NAME}` form.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in os.environ:
            return os.environ[name]
        secret_file = secrets_dir / name
        if secret_file.is_file():
            return secret_file.read_text().strip()
        raise SourceError(
            f"credential ${{{name}}} is not set: no environment variable {name} and no file {secret_file}"
        )

    return _CREDENTIAL_REF.sub(value, source)


def open_source(
    source: str, *, folder_fps: float, open_timeout_s: float = 5.0, recording: bool = False
) -> FrameSource:
    """The source for a camera's `source` string; raises SourceError with a safe message.

    `recording`: a network source plays like a file (paced, finished at its end) instead of reconnecting.
    """
    source = expand_credentials(source)
    if not is_live(source) and Path(source).is_dir():
        return FolderSource(source, folder_fps)
    return AvSource(source, open_timeout_s=open_timeout_s, recording=recording)


def camera_id_from_source(source: str) -> str:
    """A camera id suggested by a source's name (file stem, folder or stream path), possibly empty."""
    text = redact(source).rstrip("/")
    name = re.split(r"[/\\]", re.sub(r"[?#].*$", "", text))[-1]
    if not is_live(source):
        name = Path(name).stem if Path(source).is_file() else name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._")[:64]
    return name
