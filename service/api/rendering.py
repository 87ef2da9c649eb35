"""Heat map images for operators: a pixel error map as a colour overlay on a camera image, with a scale bar.

Pure functions over numpy arrays (BGR uint8 images, float32 error maps); the API routes fetch the inputs
from Redis and send the PNG.
"""

from __future__ import annotations

import cv2
import numpy as np

# Analysis frames are small (e.g. 192x128): images narrower than this are upscaled before drawing.
MIN_WIDTH = 480
# Errors below this fraction of the scale's top are left uncoloured: they are noise, not evidence.
MEANINGFUL_FRACTION = 0.1
# From the meaningful fraction, the overlay's opacity ramps up over this much of the scale to MAX_ALPHA.
ALPHA_RAMP = 0.3
MAX_ALPHA = 0.65
COLORMAP = cv2.COLORMAP_JET
SCALE_BAR_HEIGHT = 42
_PANEL_BGR = (32, 32, 32)
_TEXT_BGR = (235, 235, 235)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.45
NEUTRAL_GRAY = 96


def decode_jpeg(data: bytes) -> np.ndarray:
    """A BGR image from JPEG (or PNG) bytes; ValueError if they are not an image."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return image


def gray_to_bgr(gray: np.ndarray) -> np.ndarray:
    """A grayscale analysis frame as a BGR image."""
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def even_size(image: np.ndarray) -> np.ndarray:
    """`image` with its last row and column repeated where its height or width is odd (H.264 frames
    are even-sized)."""
    height, width = image.shape[:2]
    pad = ((0, height % 2), (0, width % 2)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad, mode="edge") if height % 2 or width % 2 else image


def neutral_image(height: int, width: int) -> np.ndarray:
    """A plain gray background of the given size, for a heat map without a camera image."""
    return np.full((height, width, 3), NEUTRAL_GRAY, dtype=np.uint8)


def upscale(image: np.ndarray, min_width: int = MIN_WIDTH) -> np.ndarray:
    """`image` enlarged (aspect kept) to at least `min_width` pixels wide."""
    height, width = image.shape[:2]
    if width >= min_width:
        return image
    new_height = max(1, round(height * min_width / width))
    return cv2.resize(image, (min_width, new_height), interpolation=cv2.INTER_LINEAR)


def sum_maps(maps: list[np.ndarray]) -> np.ndarray:
    """The pixelwise sum of error maps; maps of other sizes (another model's) are resized to the largest."""
    if not maps:
        raise ValueError("no maps to sum")
    height, width = max((m.shape for m in maps), key=lambda shape: shape[0] * shape[1])
    total = np.zeros((height, width), dtype=np.float32)
    for error_map in maps:
        if error_map.shape != (height, width):
            error_map = cv2.resize(error_map, (width, height), interpolation=cv2.INTER_LINEAR)
        total += error_map
    return total


def overlay_alpha(normalized: np.ndarray) -> np.ndarray:
    """Per-pixel opacity: 0 below the meaningful fraction, ramping up to MAX_ALPHA."""
    return MAX_ALPHA * np.clip((normalized - MEANINGFUL_FRACTION) / ALPHA_RAMP, 0.0, 1.0)


def colorize(normalized: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as BGR colours of the colour map."""
    levels = np.clip(normalized * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(levels, COLORMAP)


def format_value(value: float) -> str:
    return f"{value:.3g}"


def scale_bar(width: int, top: float, label: str) -> np.ndarray:
    """A BGR strip `width` wide: the colour scale from 0 to `top`, with its ends and `label` written below."""
    panel = np.empty((SCALE_BAR_HEIGHT, width, 3), dtype=np.uint8)
    panel[:] = _PANEL_BGR
    margin = 10
    bar_width = max(width - 2 * margin, 1)
    gradient = colorize(np.linspace(0.0, 1.0, bar_width, dtype=np.float32)[None, :])
    panel[6:20, margin : margin + bar_width] = np.repeat(gradient, 14, axis=0)
    floor_x = margin + round(MEANINGFUL_FRACTION * (bar_width - 1))
    panel[4:22, floor_x] = _TEXT_BGR  # below this mark nothing is coloured on the image
    baseline = SCALE_BAR_HEIGHT - 7
    top_text = format_value(top)
    (top_width, _), _ = cv2.getTextSize(top_text, _FONT, _FONT_SCALE, 1)
    (label_width, _), _ = cv2.getTextSize(label, _FONT, _FONT_SCALE, 1)
    cv2.putText(panel, "0", (margin, baseline), _FONT, _FONT_SCALE, _TEXT_BGR, 1, cv2.LINE_AA)
    cv2.putText(
        panel, top_text, (width - margin - top_width, baseline), _FONT, _FONT_SCALE, _TEXT_BGR, 1, cv2.LINE_AA
    )
    if label and label_width < width - 2 * (margin + top_width + 10):
        cv2.putText(
            panel,
            label,
            ((width - label_width) // 2, baseline),
            _FONT,
            _FONT_SCALE,
            _TEXT_BGR,
            1,
            cv2.LINE_AA,
        )
    return panel


def render_overlay(
    base: np.ndarray, error_map: np.ndarray, *, label: str = "", top: float | None = None
) -> np.ndarray:
    """`base` (BGR) with `error_map` (float, any size: it is stretched over the image) as a colour overlay,
    and a scale bar from 0 to `top` (default: the map's maximum) under it."""
    if base.ndim != 3 or base.shape[2] != 3:
        raise ValueError(f"base image must be BGR (H, W, 3), got shape {base.shape}")
    if error_map.ndim != 2:
        raise ValueError(f"error map must be 2-D, got shape {error_map.shape}")
    image = upscale(base)
    height, width = image.shape[:2]
    errors = cv2.resize(
        np.nan_to_num(error_map.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )
    errors = np.maximum(errors, 0.0)
    top = float(errors.max()) if top is None else float(top)
    # a map of zeros has nothing to show
    normalized = np.clip(errors / top, 0.0, 1.0) if top > 0 else np.zeros_like(errors)
    alpha = overlay_alpha(normalized)[..., None]
    blended = image.astype(np.float32) * (1.0 - alpha) + colorize(normalized).astype(np.float32) * alpha
    picture = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return np.vstack([picture, scale_bar(width, top, label)])


def encode_png(image: np.ndarray) -> bytes:
    ok, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return png.tobytes()
