"""Encoding frames into a video file with PyAV: H.264 where an encoder exists (the
demo clip, alert clips, test recordings)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ENCODERS = ("libx264", "libopenh264", "h264", "mpeg4")  # first available wins
FFMPEG_FORMATS = {"mkv": "matroska", "ts": "mpegts"}  # file suffixes whose FFmpeg muxer is named otherwise


def pick_encoder() -> str:
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):  # ValueError: unknown codec name
            continue
        return name
    raise RuntimeError(f"no video encoder available in PyAV (tried {', '.join(ENCODERS)})")


def write_clip(path: Path, frames: Iterable[np.ndarray], fps: int) -> str:
    """Encode frames (grayscale [H, W] or BGR [H, W, 3], even sizes) with a keyframe every second into a
    video file (its format from the suffix); returns the encoder used."""
    rest = iter(frames)
    first = next(rest)
    height, width = first.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    container_format = path.suffix.lower().lstrip(".")
    encoder = pick_encoder()
    # faststart: the index first, so an MP4 also plays over HTTP before it has fully arrived
    options = {"movflags": "faststart"} if container_format == "mp4" else {}
    output_format = FFMPEG_FORMATS.get(container_format, container_format)
    with av.open(str(path), mode="w", format=output_format, options=options) as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.gop_size = fps
        stream.time_base = Fraction(1, fps)
        if encoder == "mpeg4":
            stream.bit_rate = 1_000_000
        for index, image in enumerate(itertools.chain([first], rest)):
            pixels = "gray" if image.ndim == 2 else "bgr24"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=pixels)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return encoder
