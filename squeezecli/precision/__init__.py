"""Precisions other than fp32: int8 projections and their kernels (int8.py), the int8 artifact squeeze
caches (artifact.py), and the calibration that decides how each projection runs (calibration.py, on
calibration_texts.py). Imports `errors`, `environment` and `model/` (never `model.loader`).
"""
