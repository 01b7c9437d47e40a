"""The network: a checkpoint's weights mapped onto ours (weights.py), the tokenizer (tokenizer.py,
tokenizer_files.py), the encoder itself (encoder.py: the model only; its projections, projection.py), how
they run on this CPU (kernels.py: oneDNN's ops and their probes, behind `kernels.project`), a model ready
to run (runtime.py)
and the process settings a run makes (process.py). torch and tokenizers are imported here; where a model
comes from and at which precision it runs is decided above, in `assembly`, so `store` and `precision` are
not imported.

May import: `errors`, `environment`, `checkpoint` (the files it reads).
"""
