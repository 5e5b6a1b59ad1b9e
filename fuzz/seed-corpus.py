#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the golden vectors in spec/vectors/.

Every hex string of 4 bytes or more in a vector file becomes one corpus input for the targets
that decode that kind of structure. Safe to re-run: inputs are named by their SHA-1.
"""
import hashlib
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "spec", "vectors")
TARGETS = {
    "keyfile": ["decode_keyfile"],
    "config": ["decode_config"],
    "envelope": ["decode_envelope", "decode_blob", "roundtrip_blob"],
    "pack": ["decode_pack_header"],
    "index": ["decode_index"],
    "tree": ["decode_tree", "roundtrip_tree"],
    "snapshot": ["decode_snapshot"],
    "lock": ["decode_lock"],
    "chunker": ["roundtrip_chunker"],
}
HEX = re.compile(r"^(?:[0-9a-f]{2}){4,}$")


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def main():
    n = 0
    for kind, targets in TARGETS.items():
        folder = os.path.join(VECTORS, kind)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(folder, name)) as f:
                data = json.load(f)
            for s in strings(data):
                if len(s) > 2 * 1024 * 1024 or not HEX.match(s):
                    continue
                raw = bytes.fromhex(s)
                for t in targets:
                    out = os.path.join(HERE, "corpus", t)
                    os.makedirs(out, exist_ok=True)
                    path = os.path.join(out, hashlib.sha1(raw).hexdigest())
                    if not os.path.exists(path):
                        with open(path, "wb") as f:
                            f.write(raw)
                        n += 1
    print(f"wrote {n} corpus inputs")


if __name__ == "__main__":
    main()
