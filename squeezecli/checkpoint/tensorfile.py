"""The safetensors file format, read and written here without the safetensors package's writer.

    8 bytes   little-endian length N of the header
    N bytes   JSON: {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}
    the rest  the tensors' bytes, back to back, at their offsets

Writing it ourselves keeps a full disk or a read-only directory an ordinary OSError (the package's Rust
writer reports them as its own exception type) and needs no numpy (safetensors 0.8's `save_file` imports
it). Reading one tensor at a time (`tensors`) lets a loader cast each as it comes (fp32 -> bf16) and
hold a checkpoint once: each tensor is read through a memory map of the file and converted (or copied)
out of it at once, so no bytes are read twice, none is held past its conversion, and the map is closed
(a tensor left a view of a map would keep the whole file resident as long as it lived).
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import torch

# Larger than any header a model's safetensors file has (a few hundred kB for thousands of tensors).
MAX_HEADER_BYTES = 100 << 20
_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int8": "I8", "uint8": "U8",
           "int16": "I16", "int32": "I32", "int64": "I64", "bool": "BOOL"}
_TORCH_DTYPES = {code: name for name, code in _DTYPES.items()}


class HeaderError(ValueError):
    """The file is not a complete safetensors file; the message says how."""


def read_header(path: Path) -> dict[str, Any]:
    """The tensors' entries of a safetensors file's header (without "__metadata__"), checked to describe
    exactly the bytes the file holds. OSError (a missing or unreadable file) passes through."""
    size = os.stat(path).st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise HeaderError("is shorter than a safetensors header")
        header_size = int.from_bytes(prefix, "little")
        if 8 + header_size > size or header_size > MAX_HEADER_BYTES:
            raise HeaderError("has a header longer than the file")
        try:
            header = json.loads(f.read(header_size))
        except (UnicodeDecodeError, ValueError):
            raise HeaderError("has a damaged safetensors header") from None
    if not isinstance(header, dict):
        raise HeaderError("has a damaged safetensors header")
    header.pop("__metadata__", None)
    try:
        end = max((int(entry["data_offsets"][1]) for entry in header.values()), default=0)
    except (KeyError, IndexError, TypeError, ValueError):
        raise HeaderError("has a damaged safetensors header") from None
    if 8 + header_size + end != size:
        raise HeaderError(f"holds {size - 8 - header_size} bytes of tensor data, its header declares {end}")
    return header


def tensors(path: Path, convert: Callable[[str, torch.Tensor], torch.Tensor] | None = None
            ) -> Iterator[tuple[str, torch.Tensor]]:
    """The file's tensors one at a time, each passed through `convert(name, tensor)` (a cast, say) as it is
    read from a memory map of the file, and in memory of its own (a result that is still the map's is
    copied out). A file that is not a complete safetensors file raises HeaderError; OSError passes through."""
    import torch

    header = read_header(path)
    with open(path, "rb") as f:
        start = 8 + int.from_bytes(f.read(8), "little")
        entries = []
        for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            try:
                dtype = getattr(torch, _TORCH_DTYPES[entry["dtype"]])
                shape = [int(n) for n in entry["shape"]]
                begin, end = (int(n) for n in entry["data_offsets"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise HeaderError(f"has a tensor {name!r} of a dtype or shape squeeze cannot read") from None
            count = 1
            for n in shape:
                count *= n
            if count * dtype.itemsize != end - begin:
                raise HeaderError(f"says tensor {name!r} has {end - begin} bytes, its shape needs {count * dtype.itemsize}")
            entries.append((name, dtype, shape, start + begin, count))
        if not any(count for *_, count in entries):  # nothing to map (mmap refuses an empty range)
            for name, dtype, shape, _, _ in entries:
                yield name, convert(name, torch.empty(shape, dtype=dtype)) if convert else torch.empty(shape, dtype=dtype)
            return
        # A private (copy-on-write) map: writable, as torch.frombuffer wants, and never written back.
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    try:
        for name, dtype, shape, offset, count in entries:
            view = torch.frombuffer(mapped, dtype=dtype, count=count, offset=offset).view(shape) if count else (
                torch.empty(shape, dtype=dtype))
            result = convert(name, view) if convert else view
            if count and result.untyped_storage().data_ptr() == view.untyped_storage().data_ptr():
                result = result.clone()
            del view
            _forget(mapped, offset, count * dtype.itemsize)
            yield name, result
            del result
    finally:
        try:
            mapped.close()
        except BufferError:  # a view still held by an exception's traceback: unmapped when it goes
            pass


def _forget(mapped: mmap.mmap, offset: int, size: int) -> None:
    """Drop the map's pages read so far from this process (read again from the file if a neighbour shares
    an edge page): a file's pages would otherwise all stay resident until the map closes, on top of the
    tensors converted from them."""
    end = (offset + size) // mmap.PAGESIZE * mmap.PAGESIZE
    if end > 0 and hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_DONTNEED, 0, end)


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (contiguous CPU tensors) to `path` in safetensors format, and fsync it."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, tensor in tensors.items():
        dtype = _DTYPES.get(str(tensor.dtype).removeprefix("torch."))
        if dtype is None or not tensor.is_contiguous() or tensor.device.type != "cpu":
            raise ValueError(f"cannot store {name}: {tensor.dtype} on {tensor.device}, contiguous={tensor.is_contiguous()}")
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format's recommended alignment of the data
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for tensor in tensors.values():
            _write_bytes(f, tensor)
        f.flush()
        os.fsync(f.fileno())


def _write_bytes(f: BinaryIO, tensor: torch.Tensor) -> None:
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes:
        f.write(memoryview((ctypes.c_char * nbytes).from_address(tensor.data_ptr())))
