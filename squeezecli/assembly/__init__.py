"""A model assembled at a precision: `load_runtime` (loader.py) makes a ready `Runtime` from where its files
come from (fetch.py, over `store`: the checkpoint, or the int8 entry `pull` builds), which precision and
kernels run here (precisions.py, over `precision`; doctor words its kernel report from there) and the
network (checkpoints.py, over `model`); the int8 artifact squeeze caches, made from an fp32 model and
loaded back (artifact.py), and the calibration that decides how each projection runs (calibration.py, on
calibration_texts.py). Nothing below imports it; `api` and `cli` reach models only through it.

May import: `errors`, `environment`, `checkpoint`, `model`, `precision`, `store`.
"""
