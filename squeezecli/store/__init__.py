"""The model store: what the user named (sources.py), the Hub download (hub.py), the built-in aliases
(catalogue.py), squeeze's cache of ready entries (cache.py), its refs (refs.py), building an entry
(build.py) and the file plumbing under them (files.py). Listing, inspecting and removing cached models
never loads torch: of the model, only its torch-free file descriptions (`checkpoint`) are used.

May import: `errors`, `environment`, `_version`, `checkpoint`.
"""
