"""Input and output: reading records from files or stdin, batching them by length, and writing results
as JSON lines, CSV/TSV or a table. Imports only `errors` and `environment` of squeeze's own, never torch:
every command's start-up goes through here.
"""
