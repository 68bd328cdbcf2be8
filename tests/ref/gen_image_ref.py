#!/usr/bin/python3
"""gen_image_ref.py - reference data for tests/test_image.c (PIL 9.4 + numpy).

Writes tests/data/img/:
  png_*.png    one small image (37x23 unless noted) in many PNG encodings: gray 1/2/4/8/16
               bit, gray+alpha, gray with tRNS, RGB 8/16, RGB tRNS, RGBA 8/16, palette
               8-bit and 4-bit with tRNS, Adam7-interlaced variants (one tiny enough that
               some Adam7 passes are empty). PIL writes the common ones (its encoder uses
               adaptive row filters); a minimal encoder below writes what PIL cannot
               (16-bit colour, interlacing, 2/4-bit gray, tRNS colour keys).
  png_*.expect.gz what the loader must return, four blocks concatenated: want_c = 0 (the
               file's own channels), 1, 3, 4 - raw u8, row-major HWC, gzipped.
  jpeg_*.jpg   JPEGs (4:2:0, 4:4:4, gray, progressive, Adobe CMYK) and *.expect.gz, PIL's
               (libjpeg-turbo) decode as RGB / L (CMYK converted by PIL's convert("RGB")).
  rs_*.png     source images and PIL.Image.resize outputs (BICUBIC, BILINEAR, NEAREST).
  f_*.f32      raw little-endian float32 planes: a mode "F" source and its resizes.
  clip_*.png   a 300x200 image and the CLIP-style preprocessing: torchvision
               Resize(224, BICUBIC) (short side 224, long = int(224 * long / short))
               then CenterCrop(224) (offset = round((W - 224) / 2), Python rounding).
  grid_*.u8    torchvision.utils.make_grid layout of small images (written from the
               documented algorithm; torchvision is not installed).
  index.json   every case: files, sizes, channels, filter.

Conventions checked here before writing (asserts): dropping alpha composites on black,
v * a / 255 rounded, which is what PIL's RGBA -> RGBa premultiplication computes; gray
is PIL's convert("L"); 16-bit samples become (v * 255 + 32767) // 65535.

Run: /usr/bin/python3 tests/ref/gen_image_ref.py  (deterministic; no network)
"""
import gzip
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "img")
rng = np.random.default_rng(20240607)
index = {"png": [], "jpeg": [], "resize": [], "fresize": [], "clip": None, "grid": None}


# ---------------------------------------------------------------- a minimal PNG encoder
def chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(a, depth):
    """a: (h, w * samples) integer samples -> list of raw scanline bytes (no filter byte)."""
    rows = []
    for r in a:
        if depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            r = np.concatenate([r, np.zeros((-len(r)) % per, dtype=r.dtype)]).reshape(-1, per)
            shifts = np.array([8 - depth * (i + 1) for i in range(per)])
            rows.append((r.astype(np.int64) << shifts).sum(1).astype(np.uint8).tobytes())
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, depth, ctype, plte=None, trns=None, interlace=False):
    """samples: (h, w, n) array of raw sample values (palette indices for ctype 3)."""
    h, w, n = samples.shape
    raw = b""
    passes = [(0, 0, 1, 1)] if not interlace else ADAM7
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue  # empty passes have no scanlines at all
        for row in pack_rows(sub.reshape(sub.shape[0], -1), depth):
            raw += b"\x00" + row
    data = b"\x89PNG\r\n\x1a\n"
    data += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0))
    if plte is not None:
        data += chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- expectations
def write_gz(name, data):
    """gzip without a time stamp, so that reruns give identical files."""
    with open(os.path.join(OUT, name), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
            f.write(data)


def composite_on_black(rgb, a):
    return ((rgb.astype(np.int64) * a[..., None].astype(np.int64) + 127) // 255).astype(np.uint8)


def pil_gray(rgb):
    return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))


def expectations(pix):
    """pix: (h, w, c) u8 as decoded with the file's own channels -> blocks for want 0,1,3,4."""
    h, w, c = pix.shape
    if c in (2, 4):
        a = pix[..., -1]
        rgb = np.repeat(pix[..., :1], 3, 2) if c == 2 else pix[..., :3]
        rgba = np.concatenate([rgb, a[..., None]], 2)
        # independent check of the compositing rule: PIL's premultiplied mode RGBa
        pm = np.asarray(Image.fromarray(rgba, "RGBA").convert("RGBa"))[..., :3]
        flat = composite_on_black(rgb, a)
        assert (pm == flat).all()
    else:
        rgb = np.repeat(pix, 3, 2) if c == 1 else pix
        rgba = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], 2)
        flat = rgb
    gray = flat[..., 0] if c <= 2 else pil_gray(flat)
    return [pix, gray[..., None], flat, rgba]


def save_case(name, pix, note):
    blocks = expectations(pix)
    write_gz(name + ".expect.gz", b"".join(np.ascontiguousarray(b, np.uint8).tobytes() for b in blocks))
    h, w, c = pix.shape
    index["png"].append({"file": name + ".png", "expect": name + ".expect.gz", "w": w, "h": h, "c": c,
                         "note": note})


def pil_pixels(path):
    """PIL's decode, as (h, w, c) u8 with the file's channels (for 8-bit-or-less files)."""
    im = Image.open(path)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("L", "RGB") and "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"))  # applies the tRNS key
        return rgba[..., [0, 3]] if im.mode == "L" else rgba
    a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


# ---------------------------------------------------------------- test images
def smooth_noise(h, w, c, amp):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for i in range(c):
        v = 128 + 100 * np.sin(x / w * (2.5 + i) + y / h * (1.5 - 0.7 * i) + i)
        chans.append(v + rng.normal(0, amp, (h, w)))
    return np.clip(np.round(np.stack(chans, 2)), 0, 255).astype(np.uint8)


def alpha_ramp(h, w):
    y, x = np.mgrid[0:h, 0:w]
    a = np.clip((x * 9 + y * 5) - 40, 0, 255).astype(np.uint8)  # zeros, ramps and 255s
    a[::5, ::3] = rng.integers(0, 256, a[::5, ::3].shape).astype(np.uint8)
    return a


def gen_png():
    H, W = 23, 37
    rgb = smooth_noise(H, W, 3, 20)
    gray = pil_gray(rgb)
    a = alpha_ramp(H, W)

    def via_pil(name, im, note, **kw):
        path = os.path.join(OUT, name + ".png")
        im.save(path, optimize=False, compress_level=9, **kw)
        return path

    p = via_pil("png_gray8", Image.fromarray(gray, "L"), "gray 8-bit, PIL encoder")
    save_case("png_gray8", pil_pixels(p), "gray 8-bit")
    p = via_pil("png_rgb8", Image.fromarray(rgb, "RGB"), "")
    assert (pil_pixels(p) == rgb).all()
    save_case("png_rgb8", rgb, "RGB 8-bit, PIL encoder")
    la = np.stack([gray, a], 2)
    p = via_pil("png_gray_alpha8", Image.fromarray(la, "LA"), "")
    assert (pil_pixels(p) == la).all()
    save_case("png_gray_alpha8", la, "gray+alpha 8-bit, PIL encoder")
    rgba = np.concatenate([rgb, a[..., None]], 2)
    p = via_pil("png_rgba8", Image.fromarray(rgba, "RGBA"), "")
    assert (pil_pixels(p) == rgba).all()
    save_case("png_rgba8", rgba, "RGBA 8-bit, PIL encoder")

    # palette, 8-bit, by PIL's quantizer; expected colours from PIL's decode
    pim = Image.fromarray(rgb, "RGB").quantize(200)
    p = via_pil("png_palette8", pim, "")
    save_case("png_palette8", pil_pixels(p), "palette 8-bit (200 colours), PIL encoder")

    # palette, 4-bit, with tRNS (some entries translucent), our encoder
    pal = rng.integers(0, 256, (16, 3)).astype(np.uint8)
    trns = np.array([0, 255, 128, 30, 255, 200, 77, 255, 1, 254], np.uint8)  # 10 of 16 entries
    idx = ((np.arange(W)[None, :] + 3 * np.arange(H)[:, None]) % 16 ^ rng.integers(0, 2, (H, W))).astype(np.uint8)
    p = os.path.join(OUT, "png_palette4_trns.png")
    write_png(p, idx[..., None], 4, 3, plte=pal, trns=bytes(trns))
    full_a = np.concatenate([trns, np.full(6, 255, np.uint8)])
    want = np.concatenate([pal[idx], full_a[idx][..., None]], 2)
    assert (pil_pixels(p) == want).all()
    save_case("png_palette4_trns", want, "palette 4-bit with tRNS, interlaced=no")

    # palette, 1-bit, interlaced
    pal2 = np.array([[10, 200, 30], [250, 5, 128]], np.uint8)
    idx2 = (rng.random((H, W)) < 0.4).astype(np.uint8)
    p = os.path.join(OUT, "png_palette1_adam7.png")
    write_png(p, idx2[..., None], 1, 3, plte=pal2, interlace=True)
    want = pal2[idx2]
    assert (pil_pixels(p) == want).all()
    save_case("png_palette1_adam7", want, "palette 1-bit, Adam7")

    # gray 1, 2, 4 bit (gray levels scale to 0..255 by bit replication, as the PNG spec)
    for depth in (1, 2, 4):
        v = (gray.astype(np.int64) >> (8 - depth)).astype(np.uint8)
        p = os.path.join(OUT, "png_gray%d.png" % depth)
        write_png(p, v[..., None], depth, 0)
        want = (v.astype(np.int64) * 255 // ((1 << depth) - 1)).astype(np.uint8)[..., None]
        assert (pil_pixels(p) == want).all(), depth
        save_case("png_gray%d" % depth, want, "gray %d-bit" % depth)

    # gray 8 with a tRNS grey key -> gray+alpha
    key = int(gray[5, 5])
    p = os.path.join(OUT, "png_gray8_trns.png")
    write_png(p, gray[..., None], 8, 0, trns=struct.pack(">H", key))
    want = np.stack([gray, np.where(gray == key, 0, 255).astype(np.uint8)], 2)
    rgba_pil = np.asarray(Image.open(p).convert("RGBA"))
    assert (rgba_pil[..., 3] == want[..., 1]).all() and (rgba_pil[..., 0] == gray).all()
    save_case("png_gray8_trns", want, "gray 8-bit with tRNS key")

    # RGB 8 with a tRNS colour key -> RGBA
    keyc = rgb[7, 11].astype(np.int64)
    rgbk = rgb.copy()
    rgbk[::4, ::6] = keyc  # make the key occur several times
    p = os.path.join(OUT, "png_rgb8_trns.png")
    write_png(p, rgbk, 8, 2, trns=struct.pack(">HHH", *keyc))
    want = np.concatenate([rgbk, np.where((rgbk == keyc).all(2), 0, 255).astype(np.uint8)[..., None]], 2)
    assert (np.asarray(Image.open(p).convert("RGBA")) == want).all()
    save_case("png_rgb8_trns", want, "RGB 8-bit with tRNS colour key")

    # 16-bit: gray, RGB, RGBA (our reduction: round(v * 255 / 65535))
    def to8(v16):
        return ((v16.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)

    v16 = rng.integers(0, 65536, (H, W, 4)).astype(np.int64)
    v16[0, :4, 0] = [0, 65535, 128, 32896]  # edges and exact midpoints of the rounding
    for name, ctype, n in (("png_gray16", 0, 1), ("png_rgb16", 2, 3), ("png_rgba16", 6, 4)):
        p = os.path.join(OUT, name + ".png")
        write_png(p, v16[..., :n], 16, ctype)
        save_case(name, to8(v16[..., :n]), "%d-channel 16-bit" % n)
    # PIL reads 16-bit RGB by keeping the high byte: confirm the file holds what we think
    assert (np.asarray(Image.open(os.path.join(OUT, "png_rgb16.png"))) == (v16[..., :3] >> 8)).all()

    # Adam7 interlaced RGB 8-bit and RGBA 16-bit
    p = os.path.join(OUT, "png_rgb8_adam7.png")
    write_png(p, rgb, 8, 2, interlace=True)
    assert (pil_pixels(p) == rgb).all()
    save_case("png_rgb8_adam7", rgb, "RGB 8-bit, Adam7")
    # tiny: 3x2 gray+alpha 16-bit interlaced (passes 2, 4, 6 are empty at this width)
    t16 = rng.integers(0, 65536, (2, 3, 2)).astype(np.int64)
    write_png(os.path.join(OUT, "png_tiny_la16_adam7.png"), t16, 16, 4, interlace=True)
    save_case("png_tiny_la16_adam7", to8(t16), "3x2 gray+alpha 16-bit, Adam7")
    return rgb


def gen_jpeg():
    rgb = smooth_noise(48, 64, 3, 12)
    # CMYK as ink amounts from the RGB noise (K = the darkest part), 32x24 so that the file
    # stays under 4 KB (a fuzz seed); PIL writes it with an Adobe marker, inverted, and
    # reads every CMYK JPEG as inverted.
    cmy = 255 - rgb[:24, :32].astype(np.int64)
    k = cmy.min(axis=2, keepdims=True)
    cmyk = np.concatenate([cmy - k, k], axis=2).astype(np.uint8)
    for name, im, kw in (("jpeg_rgb420", Image.fromarray(rgb, "RGB"), {"quality": 85}),
                         ("jpeg_rgb444", Image.fromarray(rgb, "RGB"), {"quality": 92, "subsampling": 0}),
                         ("jpeg_gray", Image.fromarray(pil_gray(rgb), "L"), {"quality": 85}),
                         ("jpeg_progressive", Image.fromarray(rgb, "RGB"), {"quality": 80, "progressive": True}),
                         ("jpeg_cmyk", Image.fromarray(cmyk, "CMYK"), {"quality": 90})):
        p = os.path.join(OUT, name + ".jpg")
        im.save(p, **kw)
        dec = Image.open(p)
        assert dec.mode == im.mode
        dec = np.asarray(dec.convert("RGB") if dec.mode == "CMYK" else dec)  # t2i reads CMYK as RGB
        dec = dec[..., None] if dec.ndim == 2 else dec
        write_gz(name + ".expect.gz", dec.tobytes())
        index["jpeg"].append({"file": name + ".jpg", "expect": name + ".expect.gz", "w": dec.shape[1],
                              "h": dec.shape[0], "c": dec.shape[2]})


FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def gen_resize(rgb37):
    H, W = 23, 37
    srcs = {}

    def src(name, arr):
        Image.fromarray(arr.squeeze(2) if arr.shape[2] == 1 else arr, MODES[arr.shape[2]]).save(
            os.path.join(OUT, name + ".png"), compress_level=9)
        srcs[name] = arr

    src("rs_src_rgb37x23", rgb37)
    # sharp edges make bicubic overshoot, which exercises the clipping after each pass
    big = smooth_noise(64, 64, 3, 30)
    big[20:40, 10:30] = [255, 0, 255]
    big[45:50, :] = 0
    src("rs_src_rgb64", big)
    src("rs_src_rgba37x23", np.concatenate([rgb37, alpha_ramp(H, W)[..., None]], 2))
    src("rs_src_gray37x23", pil_gray(rgb37)[..., None])
    cases = [("rs_src_rgb37x23", 16, 16), ("rs_src_rgb37x23", 80, 51), ("rs_src_rgb64", 7, 9),
             ("rs_src_rgb64", 50, 97), ("rs_src_gray37x23", 20, 30), ("rs_src_rgba37x23", 16, 16),
             ("rs_src_rgba37x23", 41, 60)]
    for s, w, h in cases:
        for fname, f in FILTERS.items():
            arr = srcs[s]
            im = Image.fromarray(arr.squeeze(2) if arr.shape[2] == 1 else arr, MODES[arr.shape[2]])
            out = im.resize((w, h), f)
            name = "rs_%s_%dx%d_%s" % (s[7:], w, h, fname)
            out.save(os.path.join(OUT, name + ".png"), compress_level=9)
            index["resize"].append({"src": s + ".png", "out": name + ".png", "w": w, "h": h,
                                    "c": arr.shape[2], "filter": fname})


def gen_fresize():
    H, W = 23, 37
    y, x = np.mgrid[0:H, 0:W]
    f = (np.sin(x * 0.4) * np.cos(y * 0.3) * 1.5 + rng.normal(0, 0.3, (H, W))).astype(np.float32)
    f[10:14, 5:9] = 3.0  # a step: the float path must not clip the overshoot
    f.astype("<f4").tofile(os.path.join(OUT, "f_src_37x23.f32"))
    for w, h, filters in ((16, 16, ("bicubic", "bilinear", "nearest")), (53, 31, ("bicubic",)),
                          (9, 7, ("bicubic", "bilinear")), (37, 50, ("bicubic",))):
        for fname in filters:
            out = np.asarray(Image.fromarray(f, "F").resize((w, h), FILTERS[fname]), np.float32)
            name = "f_%dx%d_%s.f32" % (w, h, fname)
            out.astype("<f4").tofile(os.path.join(OUT, name))
            index["fresize"].append({"src": "f_src_37x23.f32", "W": W, "H": H, "out": name, "w": w,
                                     "h": h, "filter": fname})


def gen_clip():
    H, W = 200, 300
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.stack([x / W * 255, y / H * 255, 128 + 60 * np.sin(x / 17 + y / 23)], 2)
    img[((x - 200) ** 2 + (y - 90) ** 2) < 40 ** 2] = [250, 240, 20]
    img[30:70, 40:120] = [10, 20, 200]
    img[150:153, :] = 255
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(OUT, "clip_src_300x200.png"), compress_level=9)
    size = 224
    short, long_ = (W, H) if W <= H else (H, W)
    new_short, new_long = size, int(size * long_ / short)
    nw, nh = (new_short, new_long) if W <= H else (new_long, new_short)
    r = Image.fromarray(img).resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    r.crop((left, top, left + size, top + size)).save(os.path.join(OUT, "clip_out_224.png"), compress_level=9)
    index["clip"] = {"src": "clip_src_300x200.png", "out": "clip_out_224.png", "size": size,
                     "resized_w": nw, "resized_h": nh, "left": left, "top": top}


def gen_grid():
    """torchvision.utils.make_grid(t, nrow, padding, pad_value), from its documented
    algorithm: xmaps = min(nrow, n), ymaps = ceil(n / xmaps), cell (H + pad) x (W + pad),
    grid (ymaps * (H + pad) + pad) x (xmaps * (W + pad) + pad), image k at
    (pad + (k // xmaps) * (H + pad), pad + (k % xmaps) * (W + pad))."""
    n, C, H, W, nrow, pad, pv = 5, 3, 4, 3, 3, 2, 7
    k, c, yy, xx = np.meshgrid(np.arange(n), np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    u8 = (k * 37 + c * 11 + yy * 5 + xx * 3) % 256  # the test builds the same floats
    xm = min(nrow, n)
    ym = -(-n // xm)
    grid = np.full((C, ym * (H + pad) + pad, xm * (W + pad) + pad), pv, np.uint8)
    for i in range(n):
        r, q = divmod(i, xm)
        grid[:, pad + r * (H + pad):pad + r * (H + pad) + H, pad + q * (W + pad):pad + q * (W + pad) + W] = u8[i]
    grid.transpose(1, 2, 0).astype(np.uint8).tofile(os.path.join(OUT, "grid_5x3x4x3_nrow3.u8"))
    index["grid"] = {"file": "grid_5x3x4x3_nrow3.u8", "n": n, "C": C, "H": H, "W": W, "nrow": nrow,
                     "pad": pad, "pad_value": pv, "gw": grid.shape[2], "gh": grid.shape[1]}


def main():
    os.makedirs(OUT, exist_ok=True)
    rgb = gen_png()
    gen_jpeg()
    gen_resize(rgb)
    gen_fresize()
    gen_clip()
    gen_grid()
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print("wrote %d files, %d bytes, to %s" % (len(os.listdir(OUT)), total, os.path.normpath(OUT)))


if __name__ == "__main__":
    main()
