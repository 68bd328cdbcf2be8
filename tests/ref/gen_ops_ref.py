#!/usr/bin/python3
"""gen_ops_ref.py - PyTorch reference values for every core layer (tests/test_ops*.c).

For each op and case this runs the PyTorch module or function forward on small random
inputs (odd sizes, batch 2-3, non-trivial biases, gammas != 1), then backward with a
random upstream gradient dy, and stores everything the C test needs to redo the same
computation with nn/ops.c and compare:

    <op>.<case>.<what>    e.g. conv2d.k4s2p1.x / .w / .b / .dy / .y / .dx / .dw / .db

Inputs and parameters (x, w, b, gamma, ...), the upstream gradient dy, the output y and
the autograd gradients (d + name). Ops: Linear; Conv2d (4 cases); ConvTranspose2d (3);
BatchNorm2d train (with batch statistics and running statistics after one step) and eval;
BatchNorm1d; LayerNorm; GroupNorm (each norm case has one channel, row or group whose
variance is close to eps, so eps must be added where PyTorch adds it); Embedding (repeated ids); eight activations; residual
add; cat on dim 1; PixelShuffle(2); nearest Upsample x2; AvgPool2d(2) and (3, stride 2);
softmax; the attention core of ops.h written explicitly (causal and full) and
nn.MultiheadAttention (its in_proj / out_proj wrapped around the core); the losses
BCEWithLogits (per-element targets and constant 0.9), CrossEntropy (ignore_index=-100,
mean, and the weighted sum of ops.h), MSE, L1; three steps of SGD, Adam and AdamW.
Losses store the scalar as shape [1] and the gradient of the loss itself (upstream 1).

Layout conventions are PyTorch's (ops.h uses the same weight layouts). Floats are F32,
ids and targets I64. The safetensors package is not installed, so the file is written
here: 8-byte little-endian header length, compact JSON header padded with spaces to a
multiple of 8, then the raw little-endian data.

Usage: /usr/bin/python3 tests/ref/gen_ops_ref.py   (writes tests/data/ops_ref.safetensors)
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(20240607)
torch.set_default_dtype(torch.float32)

OUT = []  # (name, tensor) in insertion order


def put(name, t):
    t = t.detach().contiguous()
    if t.dtype == torch.float64:
        t = t.float()
    assert t.dtype in (torch.float32, torch.int64), (name, t.dtype)
    assert all(n != name for n, _ in OUT), name
    OUT.append((name, t.clone()))


def rand(*shape, std=1.0):
    return torch.randn(*shape) * std


def leaf(t):
    return t.clone().requires_grad_(True)


def serialise(tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        if t.dtype == torch.float32:
            b, dt = t.numpy().astype("<f4").tobytes(), "F32"
        else:
            b, dt = t.numpy().astype("<i8").tobytes(), "I64"
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def module_case(prefix, module, x, params, dy=None):
    """Forward + backward of a module with named parameters; stores all of it."""
    xl = leaf(x)
    y = module(xl)
    if dy is None:
        dy = rand(*y.shape)
    y.backward(dy)
    put(prefix + ".x", x)
    for pname, p in params:
        put(prefix + "." + pname, p)
    put(prefix + ".dy", dy)
    put(prefix + ".y", y)
    put(prefix + ".dx", xl.grad)
    for pname, p in params:
        put(prefix + ".d" + pname, p.grad)
    return y


# ---------------------------------------------------------------- Linear
def gen_linear():
    m = nn.Linear(7, 5)
    with torch.no_grad():
        m.bias.copy_(rand(5, std=0.5))
    module_case("linear.a", m, rand(3, 7), [("w", m.weight), ("b", m.bias)])


# ---------------------------------------------------------------- convolutions
def gen_conv2d():
    # name: (N, C, H, W, OC, K, stride, pad)
    cases = {
        "k3s1p1": (2, 3, 7, 7, 4, 3, 1, 1),
        "k4s2p1": (2, 3, 9, 8, 5, 4, 2, 1),
        "k1s1p0": (3, 5, 4, 3, 6, 1, 1, 0),
        "k3s2p0": (2, 3, 9, 6, 4, 3, 2, 0),
    }
    for name, (N, C, H, W, OC, K, s, p) in cases.items():
        m = nn.Conv2d(C, OC, K, stride=s, padding=p)
        with torch.no_grad():
            m.bias.copy_(rand(OC, std=0.5))
        module_case("conv2d." + name, m, rand(N, C, H, W), [("w", m.weight), ("b", m.bias)])


def gen_conv_transpose2d():
    # name: (N, C, H, W, OC, K, stride, pad, output_padding)
    cases = {
        "k4s2p1": (2, 4, 5, 5, 3, 4, 2, 1, 0),
        "k3s1p1": (2, 3, 5, 6, 4, 3, 1, 1, 0),
        "k3s2p1op1": (2, 3, 4, 5, 2, 3, 2, 1, 1),
    }
    for name, (N, C, H, W, OC, K, s, p, op) in cases.items():
        m = nn.ConvTranspose2d(C, OC, K, stride=s, padding=p, output_padding=op)
        with torch.no_grad():
            m.bias.copy_(rand(OC, std=0.5))
        module_case("convt2d." + name, m, rand(N, C, H, W), [("w", m.weight), ("b", m.bias)])


# ---------------------------------------------------------------- norms
def gen_batchnorm():
    for prefix, mod, shape in (("bn2d.train", nn.BatchNorm2d, (3, 4, 5, 3)),
                               ("bn1d.train", nn.BatchNorm1d, (6, 5))):
        C = shape[1]
        m = mod(C, eps=1e-5, momentum=0.1)
        with torch.no_grad():
            m.weight.copy_(torch.rand(C) + 0.5)
            m.bias.copy_(rand(C, std=0.5))
            m.running_mean.copy_(rand(C, std=0.3))
            m.running_var.copy_(torch.rand(C) + 0.5)
        put(prefix + ".running_mean0", m.running_mean)
        put(prefix + ".running_var0", m.running_var)
        m.train()
        x = rand(*shape) * 1.5 + 0.7
        x[:, 1] = x[:, 1] * 0.003  # variance ~2e-5, comparable to eps: checks where eps goes
        dims = (0, 2, 3) if len(shape) == 4 else (0,)
        module_case(prefix, m, x, [("gamma", m.weight), ("beta", m.bias)])
        put(prefix + ".mean", x.mean(dims))
        put(prefix + ".var", x.var(dims, unbiased=False))
        put(prefix + ".running_mean1", m.running_mean)
        put(prefix + ".running_var1", m.running_var)

    # eval mode: output from given running statistics
    C = 4
    m = nn.BatchNorm2d(C, eps=1e-5)
    with torch.no_grad():
        m.weight.copy_(torch.rand(C) + 0.5)
        m.bias.copy_(rand(C, std=0.5))
        m.running_mean.copy_(rand(C, std=0.5))
        m.running_var.copy_(torch.rand(C) + 0.3)
    m.eval()
    x = rand(2, C, 3, 5)
    with torch.no_grad():
        y = m(x)
    for k, v in (("x", x), ("gamma", m.weight), ("beta", m.bias), ("running_mean", m.running_mean),
                 ("running_var", m.running_var), ("y", y)):
        put("bn2d.eval." + k, v)


def gen_layernorm():
    m = nn.LayerNorm(9, eps=1e-5)
    with torch.no_grad():
        m.weight.copy_(torch.rand(9) + 0.5)
        m.bias.copy_(rand(9, std=0.5))
    x = rand(2, 3, 9) * 2 + 0.5
    x[0, 1] = rand(9) * 0.003 + 0.2  # a row with variance ~1e-5, comparable to eps
    module_case("layernorm.a", m, x, [("w", m.weight), ("b", m.bias)])


def gen_groupnorm():
    m = nn.GroupNorm(3, 6, eps=1e-5)
    with torch.no_grad():
        m.weight.copy_(torch.rand(6) + 0.5)
        m.bias.copy_(rand(6, std=0.5))
    x = rand(2, 6, 4, 3) * 2 - 0.3
    x[1, 2:4] = rand(2, 4, 3) * 0.003 - 0.1  # group 1 of image 1: variance ~1e-5
    module_case("groupnorm.g3", m, x, [("gamma", m.weight), ("beta", m.bias)])


def gen_embedding():
    m = nn.Embedding(10, 4)
    ids = torch.tensor([[3, 7, 3, 0, 9], [7, 7, 1, 3, 5]], dtype=torch.int64)
    y = m(ids)
    dy = rand(*y.shape)
    y.backward(dy)
    put("embedding.a.ids", ids)
    put("embedding.a.w", m.weight)
    put("embedding.a.dy", dy)
    put("embedding.a.y", y)
    put("embedding.a.dw", m.weight.grad)


# ---------------------------------------------------------------- activations
ACTS = {
    "relu": nn.ReLU(),
    "leaky_relu": nn.LeakyReLU(0.2),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "gelu_erf": nn.GELU(),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "silu": nn.SiLU(),
    "tanh": nn.Tanh(),
    "sigmoid": nn.Sigmoid(),
}


def gen_activations():
    x = rand(4, 33) * 2.5
    x[0, :9] = torch.tensor([-6.0, -3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.5, 6.0])
    dy = rand(*x.shape)
    put("act.x", x)
    put("act.dy", dy)
    for name, fn in ACTS.items():
        xl = leaf(x)
        y = fn(xl)
        y.backward(dy)
        put("act.%s.y" % name, y)
        put("act.%s.dx" % name, xl.grad)


# ---------------------------------------------------------------- structural
def gen_structural():
    a, b = rand(2, 3, 4, 5), rand(2, 3, 4, 5)
    al, bl = leaf(a), leaf(b)
    y = al + bl
    dy = rand(*y.shape)
    y.backward(dy)
    for k, v in (("a", a), ("b", b), ("dy", dy), ("y", y), ("da", al.grad), ("db", bl.grad)):
        put("add.a." + k, v)

    a, b = rand(2, 3, 4, 5), rand(2, 2, 4, 5)
    al, bl = leaf(a), leaf(b)
    y = torch.cat([al, bl], dim=1)
    dy = rand(*y.shape)
    y.backward(dy)
    for k, v in (("a", a), ("b", b), ("dy", dy), ("y", y), ("da", al.grad), ("db", bl.grad)):
        put("cat.a." + k, v)

    module_case("pixel_shuffle.r2", nn.PixelShuffle(2), rand(2, 8, 3, 4), [])
    module_case("upsample.f2", nn.Upsample(scale_factor=2, mode="nearest"), rand(2, 3, 4, 5), [])
    module_case("avgpool.k2", nn.AvgPool2d(2), rand(2, 3, 6, 7), [])
    module_case("avgpool.k3s2", nn.AvgPool2d(3, stride=2), rand(2, 3, 9, 8), [])
    module_case("softmax.a", lambda x: torch.softmax(x, dim=-1), rand(5, 11) * 3, [])


# ---------------------------------------------------------------- attention
def attention_core(qkv, NH, causal):
    """The ops.h definition: qkv (B, T, 3C) -> (B, T, C), no output projection."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // NH
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B, T, NH, hs).transpose(1, 2)
    k = k.view(B, T, NH, hs).transpose(1, 2)
    v = v.view(B, T, NH, hs).transpose(1, 2)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    att = torch.softmax(s, dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    return y, att


def gen_attention():
    B, T, C, NH = 2, 5, 12, 3
    qkv = rand(B, T, 3 * C)
    for name, causal in (("causal", 1), ("full", 0)):
        ql = leaf(qkv)
        y, att = attention_core(ql, NH, causal)
        dy = rand(*y.shape)
        y.backward(dy)
        p = "attn." + name
        for k, v in (("qkv", qkv), ("dy", dy), ("y", y), ("att", att), ("dqkv", ql.grad)):
            put(p + "." + k, v)

    # PyTorch's own module: in_proj (fused q|k|v rows), the core, out_proj.
    for name, causal in (("full", 0), ("causal", 1)):
        mha = nn.MultiheadAttention(C, NH, batch_first=True)
        with torch.no_grad():
            mha.in_proj_bias.copy_(rand(3 * C, std=0.3))
            mha.out_proj.bias.copy_(rand(C, std=0.3))
        x = rand(B, T, C)
        xl = leaf(x)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
        y, _ = mha(xl, xl, xl, need_weights=False, attn_mask=mask)
        dy = rand(*y.shape)
        y.backward(dy)
        p = "mha." + name
        params = (("in_w", mha.in_proj_weight), ("in_b", mha.in_proj_bias),
                  ("out_w", mha.out_proj.weight), ("out_b", mha.out_proj.bias))
        put(p + ".x", x)
        for k, v in params:
            put(p + "." + k, v)
        put(p + ".dy", dy)
        put(p + ".y", y)
        put(p + ".dx", xl.grad)
        for k, v in params:
            put(p + ".d" + k, v.grad)
        # sanity: the module agrees with the explicit core between the projections
        with torch.no_grad():
            qkv2 = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)
            y2 = F.linear(attention_core(qkv2, NH, causal)[0], mha.out_proj.weight, mha.out_proj.bias)
            assert (y2 - y).abs().max() < 1e-5, "MultiheadAttention disagrees with the core"


# ---------------------------------------------------------------- losses
def loss_case(prefix, fn, x, extra):
    xl = leaf(x)
    loss = fn(xl)
    loss.backward()
    put(prefix + ".x", x)
    for k, v in extra:
        put(prefix + "." + k, v)
    put(prefix + ".loss", loss.reshape(1))
    put(prefix + ".dx", xl.grad)


def gen_losses():
    x, t = rand(3, 7) * 2, torch.rand(3, 7)
    loss_case("bce.a", lambda z: F.binary_cross_entropy_with_logits(z, t), x, [("t", t)])
    x = rand(3, 7) * 2
    loss_case("bce.const09", lambda z: F.binary_cross_entropy_with_logits(z, torch.full_like(z, 0.9)), x, [])

    N, V = 7, 10
    x = rand(N, V) * 2
    t = torch.randint(0, V, (N,), dtype=torch.int64)
    t[2] = -100
    t[5] = -100
    loss_case("ce.mean", lambda z: F.cross_entropy(z, t, ignore_index=-100), x, [("t", t)])
    w = torch.rand(N)
    w = w / w.sum()
    loss_case("ce.weighted",
              lambda z: (w * F.cross_entropy(z, t, ignore_index=-100, reduction="none")).sum(),
              x, [("t", t), ("w", w)])

    x, y = rand(3, 5), rand(3, 5)
    loss_case("mse.a", lambda z: F.mse_loss(z, y), x, [("t", y)])
    x, y = rand(3, 5), rand(3, 5)
    loss_case("l1.a", lambda z: F.l1_loss(z, y), x, [("t", y)])


# ---------------------------------------------------------------- optimizers
def gen_optim():
    p0 = rand(4, 5)
    grads = rand(3, 4, 5)
    put("optim.p0", p0)
    put("optim.grads", grads)
    makers = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    }
    for name, make in makers.items():
        p = nn.Parameter(p0.clone())
        opt = make([p])
        for step in range(3):
            p.grad = grads[step].clone()
            opt.step()
            put("optim.%s.p%d" % (name, step + 1), p)


def main():
    gen_linear()
    gen_conv2d()
    gen_conv_transpose2d()
    gen_batchnorm()
    gen_layernorm()
    gen_groupnorm()
    gen_embedding()
    gen_activations()
    gen_structural()
    gen_attention()
    gen_losses()
    gen_optim()

    d = dict(OUT)
    gap = (d["act.gelu_erf.y"] - d["act.gelu_tanh.y"]).abs().max().item()
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "data", "ops_ref.safetensors")
    data = serialise(OUT)
    with open(path, "wb") as fh:
        fh.write(data)
    print("wrote %s (%d bytes, %d tensors); max |gelu_erf - gelu_tanh| = %.3g"
          % (os.path.normpath(path), len(data), len(OUT), gap))


if __name__ == "__main__":
    main()
