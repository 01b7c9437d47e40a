"""Precisions other than fp32: what this CPU offers and the precision `auto` picks (cpu.py), int8
projections and embeddings and their kernel (int8.py). Imports `errors`, `environment` and `model/` (the
encoder's Projection seam that int8 projections fill), never `store` or `assembly`.
"""
