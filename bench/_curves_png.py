"""Per-epoch curves of the benchmark arms as a PNG, with or without matplotlib.

The GPU machine the stage_a benchmark is written for has torch, numpy and scikit-image only, so
matplotlib may be missing there. With it, :func:`write_curves_png` draws labelled panels; without
it, a plain raster (``skimage.draw`` lines on a numpy canvas, PNG encoded with ``zlib``): no text,
one colour per arm in ``COLOURS`` order, the axes' ranges returned so that the caller can print
them. The numbers themselves are always in the results JSON; the picture is a convenience.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:orange")
_RGB = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14))


def write_curves_png(arms: dict[str, dict[str, list[Any]]], path: str | Path, *,
                     x_key: str, panels: list[tuple[str, str, bool]], title: str = "",
                     backend: str = "auto") -> dict[str, Any]:
    """Draw ``arms`` (arm -> {series name -> per-epoch values}) into ``path``.

    ``panels`` is ``[(series, y label, log scale), ...]``; ``x_key`` names the x series.
    ``backend``: ``matplotlib``, ``raster`` or ``auto`` (matplotlib when importable).
    Returns ``{"backend", "colours": {arm: colour}, "panels": [{series, x range, y range}]}``.
    """
    if backend not in ("auto", "matplotlib", "raster"):
        raise ValueError(f"backend={backend!r}: use auto, matplotlib or raster")
    if backend == "auto":
        try:
            import matplotlib  # noqa: F401
            backend = "matplotlib"
        except ImportError:
            backend = "raster"
    info: dict[str, Any] = {"backend": backend,
                            "colours": {a: COLOURS[i % len(COLOURS)] for i, a in enumerate(arms)},
                            "panels": []}
    for series, _, log in panels:
        xs = [x for c in arms.values()
              for x, y in zip(c.get(x_key, []), c.get(series, []), strict=False)
              if _usable(y, log)]
        ys = [_y(y, log) for c in arms.values() for y in c.get(series, []) if _usable(y, log)]
        info["panels"].append({"series": series, "log10": log,
                               "x_range": [min(xs), max(xs)] if xs else None,
                               "y_range": [min(ys), max(ys)] if ys else None})
    if backend == "matplotlib":
        _matplotlib(arms, Path(path), x_key, panels, title)
    else:
        _raster(arms, Path(path), x_key, panels, info["panels"])
    return info


def _usable(y: Any, log: bool) -> bool:
    return isinstance(y, (int, float)) and math.isfinite(y) and (y > 0 or not log)


def _y(y: float, log: bool) -> float:
    return math.log10(y) if log else float(y)


def _matplotlib(arms, path: Path, x_key: str, panels, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (series, label, log) in zip(axes[0], panels, strict=True):
        for i, (arm, c) in enumerate(arms.items()):
            pts = [(x, y) for x, y in zip(c.get(x_key, []), c.get(series, []), strict=False)
                   if _usable(y, log)]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3,
                        color=COLOURS[i % len(COLOURS)], label=arm)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(x_key.replace("_", " "))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _raster(arms, path: Path, x_key: str, panels, ranges, w: int = 360, h: int = 280) -> None:
    import numpy as np
    from skimage.draw import line, rectangle

    pad = 24
    img = np.full((h, w * len(panels), 3), 255, dtype=np.uint8)
    for k, ((series, _, log), rng) in enumerate(zip(panels, ranges, strict=True)):
        x0 = k * w
        frame = [(pad, x0 + pad), (pad, x0 + w - pad), (h - pad, x0 + w - pad), (h - pad, x0 + pad)]
        for (r0, c0), (r1, c1) in zip(frame, frame[1:] + frame[:1], strict=True):
            rr, cc = line(r0, c0, r1, c1)
            img[rr, cc] = 0
        if not rng["x_range"] or not rng["y_range"]:
            continue
        (xa, xb), (ya, yb) = rng["x_range"], rng["y_range"]
        xb, yb = (xb if xb > xa else xa + 1), (yb if yb > ya else ya + 1)

        def px(x: float, y: float, x0: int = x0, xa: float = xa, xb: float = xb, ya: float = ya,
               yb: float = yb) -> tuple[int, int]:
            c = x0 + pad + 4 + round((x - xa) / (xb - xa) * (w - 2 * pad - 8))
            r = h - pad - 4 - round((y - ya) / (yb - ya) * (h - 2 * pad - 8))
            return r, c

        for i, c in enumerate(arms.values()):
            colour = _RGB[i % len(_RGB)]
            pts = [px(x, _y(y, log))
                   for x, y in zip(c.get(x_key, []), c.get(series, []), strict=False)
                   if _usable(y, log)]
            for (r0, c0), (r1, c1) in zip(pts, pts[1:], strict=False):
                rr, cc = line(r0, c0, r1, c1)
                img[rr, cc] = colour
            for r, cc0 in pts:
                rr, cc = rectangle((r - 2, cc0 - 2), extent=(5, 5), shape=img.shape[:2])
                img[rr, cc] = colour
    _write_png(img, path)


def _write_png(rgb, path: Path) -> None:
    """An 8-bit RGB PNG (filter 0 on every row), per the PNG specification's chunk layout."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n"
                           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
