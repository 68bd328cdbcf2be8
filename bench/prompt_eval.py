#!/usr/bin/env python3
"""prompt_eval.py - helpers of bench/prompt.sh (image prompts measured on FC32).

  prompt_eval.py merge OUT DIR...      OUT/scores.json: the results of every DIR/scores.json
                                       (t2i generate runs, one caption each), files relative
                                       to OUT; with --caption-from-image META, each result's
                                       caption becomes "a {colour} {class}" of the image its
                                       DIR is named after (item index = DIR's name) in META
  prompt_eval.py seam R0 R1 DIR...     mean absolute pixel difference (0-255) across the
                                       border of the centre square (cells R0..R1-1 of the
                                       8x8 grid of a 32x32 image) in every DIR/*/rank_*.png,
                                       and the same pairs in every DIR/prompt.png (the VQ
                                       reconstruction, no mask): one JSON line, all four
                                       sides and split into top+left (kept cells before
                                       the redrawn ones in raster order) and bottom+right
  prompt_eval.py captions META PHRASING  canonical captions of META's items in PHRASING
                                       ("{colour}", "{class}" replaced), one per line
  prompt_eval.py halves META DIR...   which colour the redrawn bottom half (rows 16-31) of
                                       every DIR/*/rank_*.png has: the caption's, the kept
                                       image's (META's item DIR) or another (nearest FC32
                                       palette colour to the mean chromaticity of pixels
                                       brighter than 0.3); one JSON line of shares
  prompt_eval.py grid OUT COLS SCALE PNG...  the PNGs (32x32 RGB) as one image, COLS a row,
                                       each scaled SCALE times (nearest), 2 pixels apart
The PNG reader handles the 8-bit RGB files t2i writes (all five row filters).
"""
import glob
import json
import os
import struct
import sys
import zlib


def png_rows(path):
    b = open(path, "rb").read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(b):
        n, t = struct.unpack(">I4s", b[pos:pos + 8])
        d = b[pos + 8:pos + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", d[:10])
            assert depth == 8 and ctype == 2, path + ": 8-bit RGB expected"
        elif t == b"IDAT":
            idat += d
        pos += 12 + n
    raw, stride, out, prev = zlib.decompress(idat), w * 3 + 1, [], bytearray(w * 3)
    for y in range(h):
        f, line = raw[y * stride], bytearray(raw[y * stride + 1:(y + 1) * stride])
        for i in range(len(line)):
            a = line[i - 3] if i >= 3 else 0
            c = prev[i - 3] if i >= 3 else 0
            up = prev[i]
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + up) & 255
            elif f == 3:
                line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        out.append(line)
        prev = line
    return out


def border_pairs(r0, r1, sides="tlbr", cell=4):
    lo, hi = r0 * cell, r1 * cell  # the square is pixels lo..hi-1
    for k in range(lo, hi):
        if "l" in sides:
            yield (k, lo - 1), (k, lo)
        if "r" in sides:
            yield (k, hi - 1), (k, hi)
        if "t" in sides:
            yield (lo - 1, k), (lo, k)
        if "b" in sides:
            yield (hi - 1, k), (hi, k)


def seam(img, r0, r1, sides="tlbr"):
    tot, n = 0, 0
    for (y0, x0), (y1, x1) in border_pairs(r0, r1, sides):
        for ch in range(3):
            tot += abs(img[y0][x0 * 3 + ch] - img[y1][x1 * 3 + ch])
            n += 1
    return tot / n


def main():
    cmd = sys.argv[1]
    if cmd == "merge":
        args = sys.argv[2:]
        meta = None
        if args[0] == "--caption-from-image":
            meta = [json.loads(l) for l in open(args[1])]
            args = args[2:]
        out, dirs = args[0], args[1:]
        allr = []
        for d in dirs:
            for r in json.load(open(os.path.join(d, "scores.json"))):
                r["file"] = os.path.relpath(os.path.join(d, r["file"]), out)
                if meta:
                    m = meta[int(os.path.basename(os.path.dirname(os.path.join(d, "x"))))]
                    r["caption"] = "a %s %s" % (m["colour"], m["class"])
                allr.append(r)
        os.makedirs(out, exist_ok=True)
        json.dump(allr, open(os.path.join(out, "scores.json"), "w"), indent=1)
    elif cmd == "seam":
        r0, r1, dirs = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
        out = {}
        for sides, name in (("tlbr", ""), ("tl", "_top_left"), ("br", "_bottom_right")):
            res = [seam(png_rows(p), r0, r1, sides) for d in dirs
                   for p in sorted(glob.glob(os.path.join(d, "*", "rank_*.png")))]
            rec = [seam(png_rows(os.path.join(d, "prompt.png")), r0, r1, sides) for d in dirs]
            out["results"] = len(res)
            out["seam_results" + name] = round(sum(res) / len(res), 2)
            out["seam_reconstruction" + name] = round(sum(rec) / len(rec), 2)
        print(json.dumps(out))
    elif cmd == "captions":
        for l in open(sys.argv[2]):
            m = json.loads(l)
            print(sys.argv[3].replace("{colour}", m["colour"]).replace("{class}", m["class"]))
    elif cmd == "halves":
        names = ["white", "red", "green", "blue", "yellow", "purple", "orange", "cyan"]
        pal = [(1, 1, 1), (1, .15, .15), (.15, 1, .15), (.2, .35, 1), (1, 1, .15), (.7, .25, 1), (1, .55, .1), (.15, 1, 1)]
        meta = [json.loads(l) for l in open(sys.argv[2])]
        count = {"caption": 0, "image": 0, "other": 0}
        for d in sys.argv[3:]:
            own = meta[int(os.path.basename(d.rstrip("/")))]["colour"]
            for r in json.load(open(os.path.join(d, "scores.json"))):
                cap = [w for w in r["caption"].split() if w in names][0]
                img = png_rows(os.path.join(d, r["file"]))
                acc, n = [0.0, 0.0, 0.0], 0
                for y in range(16, 32):
                    for x in range(32):
                        px = img[y][x * 3:x * 3 + 3]
                        m = max(px)
                        if m > 0.3 * 255:
                            for ch in range(3):
                                acc[ch] += px[ch] / m
                            n += 1
                if n == 0:
                    count["other"] += 1
                    continue
                mean = [a / n for a in acc]
                best = min(range(8), key=lambda k: sum((mean[ch] - pal[k][ch]) ** 2 for ch in range(3)))
                count["caption" if names[best] == cap else "image" if names[best] == own else "other"] += 1
        tot = sum(count.values())
        print(json.dumps({"results": tot, **{k: round(v / tot, 3) for k, v in count.items()}}))
    elif cmd == "grid":
        out, cols, sc, files = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
        imgs = [png_rows(f) for f in files]
        h, w = len(imgs[0]), len(imgs[0][0]) // 3
        nrow = (len(imgs) + cols - 1) // cols
        W, H = cols * (w * sc + 2) + 2, nrow * (h * sc + 2) + 2
        canvas = [bytearray(W * 3) for _ in range(H)]
        for k, im in enumerate(imgs):
            oy, ox = 2 + (k // cols) * (h * sc + 2), 2 + (k % cols) * (w * sc + 2)
            for y in range(h * sc):
                row = im[y // sc]
                for x in range(w * sc):
                    canvas[oy + y][(ox + x) * 3:(ox + x) * 3 + 3] = row[(x // sc) * 3:(x // sc) * 3 + 3]
        raw = b"".join(b"\0" + bytes(r) for r in canvas)
        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
        open(out, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    else:
        sys.exit("prompt_eval.py: unknown command " + cmd)


main()
