#!/usr/bin/python3
"""gen_fc32_ref.py - independent reference values for tests/test_data.c.

Reads Debian's Fashion-MNIST with Python's gzip module and rebuilds some FC32
("fashion-captions") items from the definition in data/fc32.h, without any t2i code:

  - the random draws follow rng.h's definition: xoshiro256** seeded through SplitMix64,
    t2i_rng_split(parent, stream) = seed(hash(parent state) ^ splitmix(stream + K)),
    below(n) by rejection above the largest multiple of n;
  - item i's draws come from split(seed(1234), i): colour (train: redrawn while the
    (colour, class) pair is held out), dx, dy, caption template;
  - pixels: round-half-up of g * colour with g the 8-bit Fashion-MNIST value and the
    palette in exact thousandths (fractions.Fraction);
  - captions from the template list in fc32.h, "an" before a vowel.

Writes tests/data/fc32_ref.json (a few KB): per item its class, colour, offsets,
template, caption and two pixel checksums (sum, and sum of px[j] * (j % 251 + 1) over
the HWC bytes), plus Fashion-MNIST facts (label histograms, first labels, pixel sums).

Run: /usr/bin/python3 tests/ref/gen_fc32_ref.py   (from the repository root)
"""
import gzip
import json
import os
from fractions import Fraction

M64 = (1 << 64) - 1
FM_DIR = os.environ.get("T2I_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
SEED = 1234

COLOURS = ["white", "red", "green", "blue", "yellow", "purple", "orange", "cyan"]
PALETTE = [(1, 1, 1), (1, .15, .15), (.15, 1, .15), (.2, .35, 1), (1, 1, .15), (.7, .25, 1),
           (1, .55, .1), (.15, 1, 1)]
CLASSES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle boot"]
HELD_OUT = {("purple", "sandal"), ("orange", "dress"), ("cyan", "bag"), ("yellow", "coat"),
            ("green", "ankle boot"), ("blue", "pullover"), ("red", "shirt"),
            ("white", "trousers")}


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class SplitMix:
    def __init__(self, x):
        self.x = x & M64

    def next(self):
        self.x = (self.x + 0x9E3779B97F4A7C15) & M64
        z = self.x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


class Rng:
    def __init__(self, seed):
        sm = SplitMix(seed)
        self.s = [sm.next() for _ in range(4)]

    def split(self, stream):
        s = self.s
        x = s[0] ^ rotl(s[1], 17) ^ rotl(s[2], 31) ^ rotl(s[3], 47)
        x ^= SplitMix(stream + 0x632BE59BD9B4E019).next()
        return Rng(x)

    def u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        limit = M64 - M64 % n
        while True:
            x = self.u64()
            if x < limit:
                return x % n


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def caption(c, k, t):
    ac = article(c)
    return [
        f"{ac} {c} {k}",
        f"a photo of {ac} {c} {k}",
        f"{c} {k}",
        f"{article(k)} {k} in {c}",
        f"a picture of {ac} {c} {k}",
        f"an image of {ac} {c} {k}",
        f"{ac} {c} {k} on a black background",
        f"a product photo of {ac} {c} {k}",
    ][t]


def read_idx(path, ndims):
    data = gzip.open(path, "rb").read()
    assert data[:4] == bytes([0, 0, 8, ndims])
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndims)]
    return dims, data[4 + 4 * ndims:]


def render(g, colour, dx, dy):
    out = bytearray(32 * 32 * 3)
    pal = [Fraction(str(v)) for v in PALETTE[colour]]
    for y in range(28):
        for x in range(28):
            v = g[y * 28 + x]
            for ch in range(3):
                q = Fraction(v) * pal[ch]  # g/255 * 255 * colour
                out[((y + dy) * 32 + x + dx) * 3 + ch] = int(q + Fraction(1, 2))  # half up
    return out


def main():
    root = Rng(SEED)
    ref = {"seed": SEED}
    for split, pre, items in (("train", "train", list(range(40)) + [59999]),
                              ("test", "t10k", list(range(40)) + [9999])):
        (n, h, w), px = read_idx(f"{FM_DIR}/{pre}-images-idx3-ubyte.gz", 3)
        (nl,), labels = read_idx(f"{FM_DIR}/{pre}-labels-idx1-ubyte.gz", 1)
        assert n == nl and h == 28 and w == 28
        hist = [0] * 10
        for lab in labels:
            hist[lab] += 1
        rows = []
        for i in items:
            cls = labels[i]
            r = root.split(i)
            while True:
                colour = r.below(8)
                if split == "test" or (COLOURS[colour], CLASSES[cls]) not in HELD_OUT:
                    break
            dx, dy, tmpl = r.below(5), r.below(5), r.below(8)
            img = render(px[i * 784:(i + 1) * 784], colour, dx, dy)
            rows.append({
                "index": i, "class": cls, "colour": colour, "dx": dx, "dy": dy, "tmpl": tmpl,
                "caption": caption(COLOURS[colour], CLASSES[cls], tmpl),
                "sum": sum(img),
                "wsum": sum(v * (j % 251 + 1) for j, v in enumerate(img)),
            })
        ref[split] = {
            "n": n, "hist": hist, "first_labels": list(labels[:10]),
            "pixel_sum_item0": sum(px[:784]), "pixel_sum_last": sum(px[(n - 1) * 784:]),
            "items": rows,
        }
    os.makedirs("tests/data", exist_ok=True)
    with open("tests/data/fc32_ref.json", "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
