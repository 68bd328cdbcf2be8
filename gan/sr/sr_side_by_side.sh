#!/bin/bash
# sr_side_by_side.sh - makes samples/sr/side_by_side.png: bicubic | L1 model | GAN model |
# original, on a 192x192 box (stamens) of the held-out photo YellowFlower.jpg, x4, shown at
# 2x zoom, and prints each panel's PSNR (RGB) against the original.
#
# Usage: bash gan/sr/sr_side_by_side.sh T2I L1_CKPT GAN_CKPT [OUT.png]
#   T2I       the t2i binary
#   L1_CKPT   an x4 model after phase 1 (a run's l1.safetensors)
#   GAN_CKPT  the model after GAN fine-tuning (that run's checkpoint.safetensors, or one of
#             `t2i sr train --init-from L1_CKPT --steps 0 --gan-steps N`)
#   OUT       default samples/sr/side_by_side.png of the checkout
# SR_PHOTO, SR_X, SR_Y, SR_SIZE override the photo and the box (HR pixels).
# The LR input is the whole photo downscaled x4 (bicubic, antialiased, 8-bit) exactly as
# `t2i sr eval` makes it; each panel is the box of the whole-image result.
set -eu
usage="usage: sr_side_by_side.sh T2I L1_CKPT GAN_CKPT [OUT.png]"
T2I=${1:?$usage}
L1=${2:?$usage}
GAN=${3:?$usage}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${4:-$ROOT/samples/sr/side_by_side.png}
PHOTO=${SR_PHOTO:-/usr/share/backgrounds/mate/nature/YellowFlower.jpg}
mkdir -p "$(dirname "$OUT")"
"$T2I" sr compare --image "$PHOTO" --ckpt "$L1" "$GAN" \
    --x "${SR_X:-2000}" --y "${SR_Y:-1100}" --size "${SR_SIZE:-192}" --zoom 2 --out "$OUT"
