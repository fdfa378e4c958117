"""Saving matplotlib figures made with the object API (matplotlib.figure.Figure, no pyplot): the caller's backend
is never touched, the format is checked before any drawing, and the file is written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Union

from .files import atomic_write_bytes


def image_format(path: Union[str, os.PathLike]) -> str:
    """The image format matplotlib will write for ``path`` (from its suffix); a ``ValueError`` naming the path for
    one it cannot write, checked before any drawing.

    >>> image_format("schedule.png"), image_format("a.SVG")
    ('png', 'svg')
    """
    from matplotlib.figure import Figure

    suffix = Path(path).suffix.lower().lstrip(".")
    supported = Figure().canvas.get_supported_filetypes()
    if suffix not in supported:
        raise ValueError(f"{path}: cannot write a {suffix or 'suffix-less'} image; use one of "
                         f"{', '.join(sorted(supported))}")
    return suffix


def save_figure(figure: Any, path: Union[str, os.PathLike], dpi: int = 120) -> None:
    """Write ``figure`` to ``path`` atomically (a failed or interrupted write leaves no half image)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format(path), dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
