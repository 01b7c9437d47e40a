"""squeeze inside other systems: a Ray Data batch-inference step (raydata.py). The library side only,
never the CLI; Ray and pyarrow are the `[ray]` extra.

May import: `errors`, `environment`, `io`, `api`.
"""
