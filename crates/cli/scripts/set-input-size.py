#!/usr/bin/env python3
"""Copy a skinlens model or checkpoint with another declared input size (skinlens.input_size),
so `skinlens evaluate` runs it at that size: measuring a test-time size (FixRes) on validation.

Usage: set-input-size.py IN.safetensors SIZE OUT.safetensors   (standard library only)
"""
import json
import struct
import sys


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, size, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(src, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.setdefault("__metadata__", {})
    meta["skinlens.input_size"] = str(size)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the tensor data 8-byte aligned
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n :])


if __name__ == "__main__":
    main()
