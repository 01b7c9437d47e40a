"""The network: config.json read and checked (config.py), the checkpoint's files (layout.py, tensorfile.py),
its weights mapped onto ours (weights.py), the tokenizer (tokenizer.py, tokenizer_files.py), the encoder
itself (encoder.py: the model only) and how its projections run on this CPU (kernels.py: oneDNN ops and
their probes, behind `kernels.project`), a model ready to run (runtime.py) and the process settings a run makes (process.py).
These import `errors`, and torch or tokenizers; config, layout and tensorfile import neither, so the
store may use them. loader.py is the one module here that reaches up, to `store/` and `precision/`.
"""
