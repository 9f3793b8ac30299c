#!/usr/bin/python3
"""A minimal safetensors reader using only json and struct, independent of saelab and of torch.

Usage: read_safetensors.py FILE
Prints JSON: {"metadata": {...}, "tensors": {name: {"dtype", "shape", "sum"}}}.
"""
import json
import struct
import sys

FORMATS = {"F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "I64": ("q", 8), "I32": ("i", 4),
           "I16": ("h", 2), "I8": ("b", 1), "U8": ("B", 1), "BOOL": ("?", 1)}


def values(dtype, raw):
    if dtype == "BF16":  # the high half of a float32
        return [struct.unpack("<f", b"\x00\x00" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
    code, size = FORMATS[dtype]
    return list(struct.unpack("<%d%s" % (len(raw) // size, code), raw))


def main():
    data = open(sys.argv[1], "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {"metadata": header.pop("__metadata__", {}), "tensors": {}}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        vals = values(e["dtype"], body[begin:end])
        out["tensors"][name] = {"dtype": e["dtype"], "shape": e["shape"], "sum": float(sum(vals))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
