"""A checkpoint in Hugging Face Hub format, described as files: which files squeeze reads and in what
order of preference (layout.py), the safetensors format read and written byte by byte (tensorfile.py),
config.json read into the few numbers every encoder needs (config.py), the heads a checkpoint can have
(heads.py). Neither torch nor tokenizers at module level: the store lists, downloads and checks
checkpoints through here without loading the network.

May import: `errors`.
"""
