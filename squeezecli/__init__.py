"""squeeze: compact encoder NLP from the shell."""

__version__ = "0.1.0"


def load(task: str, model: str | None = None, **kwargs):
    """A ready pipeline for a task; see `squeezecli.api.load` (imported lazily: torch loads only here)."""
    from .api import load as _load

    return _load(task, model, **kwargs)
