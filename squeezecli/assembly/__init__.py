"""A model assembled at a precision: where its files come from (`store`), which precision and kernels run
here (`precision`), and the network built from them (`model`), as a ready `Runtime` (loader.py); the int8
artifact squeeze caches, made from an fp32 model and loaded back (artifact.py), and the calibration that
decides how each projection runs (calibration.py, on calibration_texts.py). The one layer that imports
`store`, `precision` and `model` together (and `checkpoint`, `errors`, `environment`); nothing below
imports it, and `api` and `cli` reach models only through it.
"""
