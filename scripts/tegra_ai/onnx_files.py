"""Which files make up an ONNX model (the .onnx plus external data), and their digest.

The target may have no ``onnx`` package, so external-data locations are read
straight from the protobuf wire format: ModelProto.graph (7) -> GraphProto.initializer
(5) and sparse_initializer (15) -> TensorProto.external_data (13) entries whose key is
"location". This is all the engine cache needs to key a model by its bytes."""

from __future__ import annotations

import mmap
import os

from tegra_ai.errors import EXIT_USAGE, TegraAIError
from tegra_ai.util.hashing import HashMemo, combined_sha256


class _Corrupt(Exception):
    pass


def _varint(buf, pos: int):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("varint too long")


def _fields(buf, start: int, end: int):
    """Yield (field_number, wire_type, value_or_(start, end)) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Corrupt("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Corrupt("length past end of message")
            yield field, wire, (pos, pos + length)
            pos += length
        else:
            raise _Corrupt(f"unsupported wire type {wire}")
        if pos > end:
            raise _Corrupt("field past end of message")


def _tensor_location(buf, start, end):
    for field, wire, value in _fields(buf, start, end):
        if field == 13 and wire == 2:  # external_data: StringStringEntryProto
            key = val = None
            for f2, w2, v2 in _fields(buf, *value):
                if w2 == 2 and f2 in (1, 2):
                    text = bytes(buf[v2[0]:v2[1]]).decode("utf-8", "replace")
                    if f2 == 1:
                        key = text
                    else:
                        val = text
            if key == "location" and val:
                yield val


def _graph_locations(buf, start, end):
    for field, wire, value in _fields(buf, start, end):
        if wire != 2:
            continue
        if field == 5:  # initializer
            yield from _tensor_location(buf, *value)
        elif field == 15:  # sparse_initializer: SparseTensorProto values(1), indices(2)
            for f2, w2, v2 in _fields(buf, *value):
                if w2 == 2 and f2 in (1, 2):
                    yield from _tensor_location(buf, *v2)


def external_data_locations(model_path: str) -> list:
    """Relative paths of the external data files a model refers to (sorted, unique)."""
    try:
        size = os.path.getsize(model_path)
        with open(model_path, "rb") as f:
            if size == 0:
                raise TegraAIError(f"{model_path} is empty, not an ONNX model", exit_code=EXIT_USAGE)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                buf = memoryview(mm)
                try:
                    locations = set()
                    saw_graph = False
                    for field, wire, value in _fields(buf, 0, len(buf)):
                        if field == 7 and wire == 2:
                            saw_graph = True
                            locations.update(_graph_locations(buf, *value))
                    if not saw_graph:
                        raise _Corrupt("no graph")
                    return sorted(locations)
                finally:
                    buf.release()
    except _Corrupt as exc:
        raise TegraAIError(f"{model_path} is not a valid ONNX model (corrupt or truncated: {exc})",
                           hint="re-export or re-copy the model", exit_code=EXIT_USAGE) from None
    except OSError as exc:
        raise TegraAIError(f"cannot read {model_path}: {exc.strerror or exc}", exit_code=EXIT_USAGE) from None


def model_files(model_path: str) -> list:
    """The model file followed by its external data files, as absolute paths.
    Raises a one-line error naming every missing external data file."""
    model_path = os.path.abspath(model_path)
    if not os.path.isfile(model_path):
        what = "is a directory, not an ONNX model" if os.path.isdir(model_path) else "does not exist"
        raise TegraAIError(f"model {model_path} {what}", exit_code=EXIT_USAGE)
    base = os.path.dirname(model_path)
    files = [model_path]
    missing = []
    for loc in external_data_locations(model_path):
        path = os.path.normpath(os.path.join(base, loc))
        if os.path.isabs(loc) or not path.startswith(base + os.sep):
            raise TegraAIError(f"{model_path}: external data location {loc!r} points outside the model's directory",
                               exit_code=EXIT_USAGE)
        real_base = os.path.realpath(base)
        if os.path.lexists(path) and not os.path.realpath(path).startswith(real_base + os.sep):
            # a symbolic link out of the folder: bundle would ship whatever it points at
            raise TegraAIError(f"{model_path}: external data file {loc!r} is a symbolic link out of the model's directory",
                               exit_code=EXIT_USAGE)
        if not os.path.isfile(path):
            missing.append(loc)
        files.append(path)
    if missing:
        raise TegraAIError(f"{os.path.basename(model_path)} refers to missing external data file(s): {', '.join(missing)}",
                           hint=f"copy them next to the model in {base}", exit_code=EXIT_USAGE)
    return files


def model_digest(model_path: str, memo: HashMemo | None = None) -> tuple:
    """(sha256 over the model and its external data, list of absolute file paths)."""
    memo = memo or HashMemo(None)
    files = model_files(model_path)
    base = os.path.dirname(files[0])
    digests = [(os.path.relpath(p, base) if i else "<model>", memo.sha256(p)) for i, p in enumerate(files)]
    return combined_sha256(digests), files


def has_qdq(model_path: str) -> bool:
    """Whether the model is explicitly quantized (QuantizeLinear/DequantizeLinear nodes)."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(model_path, load_external_data=False)
        except Exception:
            model = None
        if model is not None:
            def walk(graph):
                for node in graph.node:
                    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                        return True
                    for attr in node.attribute:
                        subs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
                        if any(walk(g) for g in subs):
                            return True
                return False
            return walk(model.graph)
    # Without onnx (on a target): the op_type strings of the node protos.
    with open(model_path, "rb") as f:
        import mmap
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return mm.find(b"QuantizeLinear") >= 0
