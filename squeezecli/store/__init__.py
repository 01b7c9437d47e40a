"""The model store: what the user named (sources.py), the Hub download (hub.py), the built-in aliases
(catalogue.py), squeeze's cache of ready entries (cache.py), building an entry (build.py) and the file
plumbing under them (files.py). Imports `errors`, `environment`, `_version` and the torch-free `checkpoint`
only: listing, inspecting and removing cached models never loads torch.
"""
