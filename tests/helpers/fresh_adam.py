#!/usr/bin/env python3
"""fresh_adam.py - did a training run's optimizer start fresh? (`... train --init CKPT`)

    fresh_adam.py CHECKPOINT

CHECKPOINT is a training checkpoint written after exactly one step. Its "state" metadata
must give every optimizer a step count of at most 1 (at least one of them 1), and every
Adam moment pair must be a fresh Adam's after one step: m = (1 - beta1) g and
v = (1 - beta2) g^2, so m^2 / v = (1 - beta1)^2 / (1 - beta2) wherever v > 0, whatever the
gradient g (weight decay and clipping change g, not the ratio). Moments carried over from
another run (m = beta1 m_old + (1 - beta1) g) break the ratio. beta1 and beta2 are read
from the state's options. Prints the number of elements checked and the worst relative
error; exits 0 when fresh, 1 when not, 2 on unreadable input.
"""
import json
import struct
import sys


def find(obj, key):
    """The first value of key anywhere in a JSON object, or None."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find(v, key)
            if r is not None:
                return r
    return None


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            head = json.loads(f.read(n))
            data = f.read()
        state = json.loads(head["__metadata__"]["state"])
    except (OSError, ValueError, KeyError, struct.error) as e:
        print(f"fresh_adam: {path}: {e}", file=sys.stderr)
        return 2
    steps = {k: v for k, v in state.items() if k.startswith("opt") and k.endswith("step")}
    if not steps or max(steps.values()) != 1 or min(steps.values()) < 0:
        print(f"fresh_adam: {path}: optimizer steps {steps}, expected at most 1 (a fresh optimizer after one step)")
        return 1
    b1, b2 = find(state, "beta1"), find(state, "beta2")
    if b1 is None or b2 is None:
        print(f"fresh_adam: {path}: no beta1/beta2 in the state", file=sys.stderr)
        return 2
    want = (1 - b1) ** 2 / (1 - b2)

    def floats(name):
        a, b = head[name]["data_offsets"]
        return struct.unpack("<%df" % ((b - a) // 4), data[a:b])

    checked, worst, where = 0, 0.0, "-"
    for name, info in head.items():
        if not name.startswith("opt_m.") or info.get("dtype") != "F32":
            continue
        vname = "opt_v." + name[len("opt_m."):]
        if vname not in head:
            continue
        for i, (m, v) in enumerate(zip(floats(name), floats(vname))):
            if v > 1e-30:
                err = abs(m * m / v / want - 1)
                checked += 1
                if err > worst:
                    worst, where = err, f"{name}[{i}]"
    print(f"fresh_adam: {checked} moments checked, m^2/v against (1-beta1)^2/(1-beta2) = {want:.6g}: "
          f"worst relative error {worst:.3g} ({where})")
    return 0 if checked >= 100 and worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
