"""matplotlib with the Agg backend, selected before pyplot is imported (no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "use_agg", "save", "shrink_png"]


def use_agg() -> None:
    matplotlib.use("Agg", force=True)


def shrink_png(path, colors: int = 64) -> None:
    """Rewrite a PNG plot with a palette of `colors` colours (3-4x smaller files for line and
    scatter plots, which use few colours; results committed to the repo stay small)."""
    from PIL import Image

    with Image.open(path) as im:
        q = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    q.save(path, "PNG", optimize=True)


def save(fig, path, dpi=None) -> str:
    """Save ``fig`` to ``path`` (parent directories created; PNGs palette-compressed) and close it."""
    from pathlib import Path
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.stem + ".tmp" + p.suffix)  # same suffix: matplotlib picks the format from it
    fig.savefig(tmp, dpi=fig.dpi if dpi is None else dpi)
    plt.close(fig)
    if p.suffix.lower() == ".png":
        shrink_png(tmp)
    tmp.replace(p)
    return str(p)
