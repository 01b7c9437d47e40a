"""A model assembled at a precision: where its files come from (`store`), which precision and kernels run
here (`precision`), the network built from them (`model`), as a ready `Runtime` (loader.py); the int8
artifact squeeze caches, made from an fp32 model and loaded back (artifact.py), and the calibration that
decides how each projection runs (calibration.py, on calibration_texts.py). Nothing below imports it;
`api` and `cli` reach models only through it.

May import: `errors`, `environment`, `checkpoint`, `model`, `precision`, `store`.
"""
