"""squeeze inside other systems: a Ray Data batch-inference step (raydata.py). Imports the library side
(`api`, `io`, `errors`), never the CLI; Ray and pyarrow are the `[ray]` extra.
"""
