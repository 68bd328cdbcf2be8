#!/usr/bin/env python3
"""check_layers.py - proves that the build enforces the layers of docs/ARCHITECTURE.md.

Usage: check_layers.py BUILD_DIR SOURCE_DIR

CMake writes BUILD_DIR/layers.txt, one library a line: "name folder dep dep ...". For every
library L this script takes the compile command of one of L's own sources (from
compile_commands.json), so it sees exactly L's include paths, and compiles a one-line file
that includes one header of every other library M:
  - M below L (reachable through L's DEPS): the include must compile (the method works);
  - M above or beside L: the include must fail with the header not found.
It also checks that no source includes a project header by a path ("gan/x.h", "../x.h"),
which would step around the include paths, and that no library calls a function (or uses
a variable) defined in a library above or beside it (nm of each BUILD_DIR/libNAME.a): a
prototype written by hand instead of an include would otherwise link in the t2i command,
where every library is on the line. Exit 0 when every case behaves, 1 otherwise.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile


def read_layers(build):
    layers = {}
    with open(os.path.join(build, "layers.txt")) as f:
        for line in f:
            parts = line.split()
            if parts:
                layers[parts[0]] = (parts[1], parts[2:])
    return layers


def closure(layers, name):
    seen, todo = set(), list(layers[name][1])
    while todo:
        d = todo.pop()
        if d in layers and d not in seen:
            seen.add(d)
            todo.extend(layers[d][1])
    return seen


def compile_flags(build, src_dir, folder):
    """The flags of one source file directly in folder (not a subfolder)."""
    with open(os.path.join(build, "compile_commands.json")) as f:
        cmds = json.load(f)
    want = os.path.realpath(os.path.join(src_dir, folder))
    for c in cmds:
        if os.path.dirname(os.path.realpath(c["file"])) == want:
            args = shlex.split(c["command"])
            keep, i = [args[0]], 1
            while i < len(args):
                a = args[i]
                if a in ("-o", "-c"):
                    i += 2
                    continue
                if a.startswith(("-I", "-D", "-isystem", "-std", "-f")):
                    keep.append(a)
                    if a == "-isystem":
                        keep.append(args[i + 1])
                        i += 1
                i += 1
            return keep
    return None


def a_header(src_dir, folder):
    hs = sorted(h for h in os.listdir(os.path.join(src_dir, folder)) if h.endswith(".h"))
    return hs[0] if hs else None


def symbol_uses(build, layers):
    """For each library: the global symbols it defines and the ones it uses undefined."""
    defined, used = {}, {}
    for name in layers:
        lib = os.path.join(build, f"lib{name}.a")
        r = subprocess.run(["nm", "-g", lib], capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"nm {lib}: {r.stderr.strip()}"
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) == 2 and f[0] == "U":
                used.setdefault(name, set()).add(f[1])
            elif len(f) == 3 and f[1] in "TDBRCVWGS":
                defined.setdefault(f[2], set()).add(name)
    return (defined, used), None


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    build, src_dir = sys.argv[1], sys.argv[2]
    layers = read_layers(build)
    passed = failed = 0
    tmp = tempfile.mkdtemp(prefix="t2i_layers_")
    probe = os.path.join(tmp, "probe.c")
    for name, (folder, _) in sorted(layers.items()):
        flags = compile_flags(build, src_dir, folder)
        if flags is None:
            print(f"FAIL {name}: no compile command for a source in {folder}/")
            failed += 1
            continue
        below = closure(layers, name)
        for other, (ofolder, _) in sorted(layers.items()):
            hdr = a_header(src_dir, ofolder)
            if other == name or hdr is None:
                continue
            with open(probe, "w") as f:
                f.write(f'#include "{hdr}"\nint t2i_layer_probe;\n')
            r = subprocess.run(flags + ["-fsyntax-only", probe], capture_output=True, text=True)
            allowed = other in below
            ok = (r.returncode == 0) if allowed else (r.returncode != 0 and "No such file" in r.stderr)
            what = "may include" if allowed else "must not include"
            if ok:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {name} ({folder}/) {what} {ofolder}/{hdr}: compiler exit {r.returncode}")
                print("     " + r.stderr.strip().replace("\n", "\n     ")[:600])
    pathed = re.compile(r'^\s*#\s*include\s+"([^"]*/[^"]*)"')
    for folder, _ in set((f, None) for f, _ in layers.values()) | {("cli", None), ("tests", None)}:
        d = os.path.join(src_dir, folder)
        for fn in sorted(os.listdir(d)):
            if not fn.endswith((".c", ".h")):
                continue
            with open(os.path.join(d, fn), errors="replace") as f:
                for no, line in enumerate(f, 1):
                    m = pathed.match(line)
                    if m:
                        failed += 1
                        print(f"FAIL {folder}/{fn}:{no}: includes \"{m.group(1)}\" by a path; "
                              "name the header alone and declare the dependency in CMakeLists.txt")
    syms, err = symbol_uses(build, layers)
    if syms is None:
        failed += 1
        print(f"FAIL {err}")
    else:
        defined, used = syms
        for name in sorted(layers):
            allowed = closure(layers, name) | {name}
            bad = 0
            for sym in sorted(used.get(name, ())):
                owners = defined.get(sym, set())
                if owners and not owners & allowed:
                    bad += 1
                    print(f"FAIL {name} ({layers[name][0]}/) uses {sym} of {', '.join(sorted(owners))}, "
                          "a library above or beside it")
            failed += bad
            passed += bad == 0
    print(f"layers: {len(layers)} libraries checked against each other")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
