#!/bin/bash
# cli_prompt.sh - image prompts of `t2i generate` on the shipped models: completion
# (--image --keep-rows), inpainting (--mask), variations; the files written (prompt.png,
# prompt_kept.png, ranks), the kept half of every result equal to prompt.png's top half
# (byte for byte in the PNGs), and the one-line refusals (unreadable image, a mask of
# another size, bad flag combinations). The pixel-exact checks on floats, the mask's
# "covers" rule and all-black / all-white masks are in tests/test_prompt.c.
# Usage: cli_prompt.sh PATH/TO/t2i
source "$(dirname "$0")/lib.sh"
export T2I_PROGRESS_SECONDS=1000
"$T2I" generate --help >"$TMP/help" 2>&1
for f in --image --keep-rows --keep-cols --mask --passes --blend --variations --variation-keep; do
    grep -q -- "$f" "$TMP/help" || fail "generate --help lacks $f"
done
"$T2I" data fashion-captions --out "$TMP/fc" --limit 2 >/dev/null 2>&1 || fail "data fashion-captions"
IMG="$TMP/fc/00000.png"
G=(generate --prompt "a yellow ankle boot" --candidates 4 --top 2 --batch 4 --threads 2)
"$T2I" "${G[@]}" --image "$IMG" --keep-rows 0.5 --out "$TMP/c" >/dev/null 2>"$TMP/err" || fail "completion: $(cat "$TMP/err")"
for f in prompt.png prompt_kept.png a_yellow_ankle_boot/rank_000.png a_yellow_ankle_boot/rank_001.png; do
    [ -f "$TMP/c/$f" ] && is_png "$TMP/c/$f" || fail "completion: no $f"
done
# the top half of every result is the reconstruction's (PNG rows compared after decoding)
/usr/bin/python3 - "$TMP/c/prompt.png" "$TMP/c/a_yellow_ankle_boot/rank_000.png" "$TMP/c/a_yellow_ankle_boot/rank_001.png" <<'EOF2' || fail "completion: the kept half differs from prompt.png"
import struct, sys, zlib
def rows(path):
    b = open(path, "rb").read()
    pos, idat, w = 8, b"", 0
    while pos < len(b):
        n, t = struct.unpack(">I4s", b[pos:pos + 8])
        d = b[pos + 8:pos + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", d[:10])
            assert depth == 8 and ctype == 2, "8-bit RGB expected"
        if t == b"IDAT":
            idat += d
        pos += 12 + n
    raw, bpp, out, prev = zlib.decompress(idat), 3, [], bytearray(w * 3)
    stride = w * 3 + 1
    for y in range(h):
        f, line = raw[y * stride], bytearray(raw[y * stride + 1:(y + 1) * stride])
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            p = a + prev[i] - c
            pred = [0, a, prev[i], (a + prev[i]) // 2,
                    a if abs(p - a) <= abs(p - prev[i]) and abs(p - a) <= abs(p - c) else prev[i] if abs(p - prev[i]) <= abs(p - c) else c][f]
            line[i] = (line[i] + pred) & 255
        out.append(bytes(line))
        prev = line
    return out
ref = rows(sys.argv[1])
for p in sys.argv[2:]:
    got = rows(p)
    assert got[:16] == ref[:16], p + ": top half differs"
    assert got[16:] != ref[16:], p + ": bottom half is the reconstruction's"
EOF2
# inpainting with a mask of the image's size; variations
cat >"$TMP/mask.py" <<'EOF3'
import struct, sys, zlib
w, h = int(sys.argv[2]), int(sys.argv[3])
rows = b"".join(b"\0" + bytes(255 if 8 <= x < 24 and 8 <= y < 24 else 0 for x in range(w)) for y in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
EOF3
/usr/bin/python3 "$TMP/mask.py" "$TMP/mask.png" 32 32
/usr/bin/python3 "$TMP/mask.py" "$TMP/mask28.png" 28 28
"$T2I" "${G[@]}" --image "$IMG" --mask "$TMP/mask.png" --passes 1 --out "$TMP/m" >/dev/null 2>"$TMP/err" ||
    fail "inpainting: $(cat "$TMP/err")"
[ -f "$TMP/m/a_yellow_ankle_boot/rank_001.png" ] || fail "inpainting: no results"
"$T2I" "${G[@]}" --variations "$IMG" --out "$TMP/v" >/dev/null 2>"$TMP/err" || fail "variations: $(cat "$TMP/err")"
[ -f "$TMP/v/prompt.png" ] && [ ! -e "$TMP/v/prompt_kept.png" ] || fail "variations: prompt files"
# refusals, one line each
check_error "nope.png" "$T2I" "${G[@]}" --image "$TMP/nope.png" --keep-rows 4 --out "$TMP/x"
check_error "the mask must have the image's size" "$T2I" "${G[@]}" --image "$IMG" --mask "$TMP/mask28.png" --out "$TMP/x"
check_error "--image needs --keep-rows" "$T2I" "${G[@]}" --image "$IMG" --out "$TMP/x"
check_error "not both" "$T2I" "${G[@]}" --image "$IMG" --variations "$IMG" --keep-rows 2 --out "$TMP/x"
check_error "need --image" "$T2I" "${G[@]}" --keep-rows 2 --out "$TMP/x"
check_error "need --image" "$T2I" "${G[@]}" --blend --out "$TMP/x"
check_error "--keep-rows must be" "$T2I" "${G[@]}" --image "$IMG" --keep-rows 9 --out "$TMP/x"
check_error "--variation-keep must be in" "$T2I" "${G[@]}" --variations "$IMG" --variation-keep 1 --out "$TMP/x"
check_error "transformer" "$T2I" "${G[@]}" --image "$IMG" --keep-rows 2 --generator gan --out "$TMP/x"
finish
