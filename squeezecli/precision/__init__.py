"""Precisions other than fp32: what this CPU offers and the precision `auto` picks (cpu.py), int8
projections and embeddings and their kernel (int8.py). The int8 projections fill the encoder's
`Projection` seam, so this package sits above `model` and the model never imports it.

May import: `errors`, `environment`, `model`.
"""
