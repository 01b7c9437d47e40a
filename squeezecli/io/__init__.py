"""Input and output: reading records from files or stdin, batching them by length, writing results as
JSON lines, CSV/TSV or a table, and the similarity index file. Never torch: every command's start-up
goes through here.

May import: `errors`, `environment`, `_version` (the files squeeze writes say which squeeze wrote them).
"""
