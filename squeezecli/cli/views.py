"""Sizes as people read them, in the commands' messages and tables (a task's result views: tasks/views.py)."""

from __future__ import annotations


def size(n: int) -> str:
    """A byte count as "812 B", "3.4 kB", "25.8 MB", "1.2 GB" (decimal units, as `ls -h --si`)."""
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
