"""Input and output: reading records from files or stdin, batching them by length, writing results as
JSON lines, CSV/TSV or a table, and the similarity index file. Imports only `errors`, `environment` and
`_version` of squeeze's own, never torch: every command's start-up goes through here.
"""
