"""nn_safetensors.py - writes and reads the safetensors format with numpy only.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian
header length N, N bytes of JSON ({name: {"dtype", "shape", "data_offsets"}}
plus an optional "__metadata__" string map), then the raw little-endian tensor
data.  The `safetensors` pip package is not available on Debian, and the
format is small enough to write directly.  echonetd's engine reads F32 only.
"""

import hashlib
import json
import struct

import numpy as np

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"),
           "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "U8": np.dtype("u1")}


def data_sha256(tensors):
    """SHA-256 of the data section save() writes for these tensors."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    return h.hexdigest()


def save(path, tensors, metadata):
    """Writes {name: float32 array} sorted by name, with string metadata.

    The header is padded with spaces to a multiple of 8 bytes so every tensor
    starts aligned, as the reference implementation does."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    import os
    os.replace(tmp, path)


def load(path):
    """Returns ({name: array}, metadata) for a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = _DTYPES[e["dtype"]]
        out[name] = np.frombuffer(data[b:end], dtype=dt).reshape(e["shape"])
    return out, meta
