"""The stored form of a pixel error map: half resolution, 8-bit, PNG-compressed, with its scale."""

from __future__ import annotations

import struct

import cv2
import numpy as np

_SCALE = struct.Struct("<f")


def encode_error_map(error_map: np.ndarray) -> bytes:
    height, width = error_map.shape
    small = cv2.resize(error_map, (max(width // 2, 1), max(height // 2, 1)), interpolation=cv2.INTER_AREA)
    scale = float(max(small.max(), 1e-6))
    quantized = np.clip(small / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", quantized)
    if not ok:
        raise ValueError("cannot encode error map")
    return _SCALE.pack(scale) + png.tobytes()


def decode_error_map(data: bytes) -> np.ndarray:
    """float32 [H/2, W/2] in the detector's error units."""
    (scale,) = _SCALE.unpack_from(data)
    quantized = cv2.imdecode(np.frombuffer(data, dtype=np.uint8, offset=_SCALE.size), cv2.IMREAD_UNCHANGED)
    if quantized is None:
        raise ValueError("not an encoded error map")
    return quantized.astype(np.float32) * (scale / 255.0)
