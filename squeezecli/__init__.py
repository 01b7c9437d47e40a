"""squeeze: compact encoder NLP from the shell.

Layers, each a subpackage whose docstring says what it owns and may import (a test checks the rule):

    cli/           Click commands and options                      -> api, io, store, assembly, precision, tasks,
                                                                       checkpoint, integrations
    api.py         `load`: a task bound to a model, as a callable  -> tasks, assembly, model, store, io
    tasks/         what each task makes of the model's output      -> model, precision, checkpoint, io
    assembly/      a model at a precision; the int8 artifact       -> store, precision, model, checkpoint
    precision/     the CPU's precisions, int8 projections, kernel  -> model
    model/         the network: weights, tokenizer, encoder        -> checkpoint
    store/         sources, the Hub, the cache of built entries    -> checkpoint
    checkpoint/    a checkpoint's files: layout, safetensors, config.json; the head vocabulary
    io/            records in, batches, results out, index files   -> errors, environment
    integrations/  Ray Data                                        -> api, io
    environment.py, errors.py: read by every layer.

Data flows one way: input -> batches -> tokenizer -> encoder -> task -> writer.
"""

from ._version import __version__
from .api import load  # the one load: a task's pipeline (api.py imports no torch until it is called)

__all__ = ["__version__", "load"]
