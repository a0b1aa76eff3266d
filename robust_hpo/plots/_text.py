"""Text helpers for figure titles and notes."""

from __future__ import annotations

__all__ = ["wrap"]


def wrap(text: str, width: int = 150) -> str:
    """``text`` with ``<br>`` breaks at word boundaries so that no line is longer than ``width``
    characters (a longer word keeps its own line)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])
