#!/usr/bin/env bash
# same_outputs.sh - does a rebuilt t2i still write exactly what the old one wrote?
#
# Runs a fixed list of t2i commands (fixed seeds, tiny sizes, explicit thread counts)
# through two binaries, each in its own scratch folder, then compares what each command
# left behind, byte for byte: its exit status, stdout, stderr and every file it wrote
# (PNGs, JSON, metrics.jsonl, safetensors). Only what legitimately changes from run to run
# is masked: wall-clock times, speeds, ETAs, memory peaks and the scratch folder's own
# absolute path. Safetensors files are compared as tensor bytes plus header (names,
# dtypes, shapes, offsets, metadata) with the same masking applied to the metadata.
#
# Usage (from anywhere; about 40 s per binary on 2 idle cores, several minutes when they
# are busy):
#   bench/same_outputs.sh OLD_T2I NEW_T2I [--keep DIR]
#     --keep DIR   work in DIR (created, must be empty) and keep it afterwards:
#                  DIR/old and DIR/new hold each binary's outputs, DIR/*/_out the streams
#
# Prints one line per check ("same"; "DIFFERENT" with the first differing file, or the
# first differing tensor or metadata entry of a checkpoint; "FAILED" when the old binary's
# command itself failed) and "N passed, N failed"; exits 1 when any check fails, 2 on
# usage errors.
#
# Both binaries read the shipped models of this checkout (samples/models, or $T2I_MODELS
# when set) through a relative samples/models link in each scratch folder, and the
# classifier through $T2I_CLASSIFIER, so a binary's built-in source path plays no part.
# Shared inputs (small photos cut from /usr/share/backgrounds, a Fashion-MNIST subset for
# the classifier, whose trainer has no step limit) are made once, by OLD_T2I and the
# shell, before either run.
set -euo pipefail

usage() {
    echo "usage: $0 OLD_T2I NEW_T2I [--keep DIR]" >&2
    exit 2
}

[[ $# -eq 2 || $# -eq 4 ]] || usage
OLD=$(realpath -e "$1") || usage
NEW=$(realpath -e "$2") || usage
KEEP=
if [[ $# -eq 4 ]]; then
    [[ $3 == --keep ]] || usage
    KEEP=$4
fi
[[ -x $OLD && -x $NEW ]] || { echo "$0: both binaries must be executable" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODELS=$(realpath -e "${T2I_MODELS:-$REPO/samples/models}")
TESTIMG=$REPO/tests/data/img
PHOTOS=/usr/share/backgrounds/mate/nature
FMNIST=${T2I_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

if [[ -n $KEEP ]]; then
    mkdir -p "$KEEP"
    [[ -z $(ls -A "$KEEP") ]] || { echo "$0: $KEEP is not empty" >&2; exit 2; }
    WORK=$(realpath "$KEEP")
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/same_outputs.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi

# Nothing from the caller's environment may steer the runs.
unset T2I_THREADS T2I_CLIP_VOCAB T2I_NO_AVX2 T2I_FASHION_MNIST_DIR
export T2I_MODELS=samples/models
export T2I_CLASSIFIER=samples/models/fmnist_classifier.safetensors
export T2I_PROGRESS_SECONDS=0 # every progress update printed: the count does not depend on speed
export LC_ALL=C

# ---------------------------------------------------------------- shared inputs ----

# cut_idx SRC.gz DST COUNT ITEM_BYTES NDIMS: the first COUNT items of an IDX file
cut_idx() {
    local src=$1 dst=$2 count=$3 item=$4 ndims=$5
    local hdr=$((4 + 4 * ndims)) tmp=$WORK/inputs/cut.tmp
    (zcat "$src" || true) | head -c $((hdr + count * item)) >"$tmp"
    {
        printf "\\x00\\x00\\x08\\x0$ndims" # magic: unsigned bytes, ndims dimensions
        printf '%08x' "$count" | xxd -r -p
        head -c "$hdr" "$tmp" | tail -c +9
        tail -c +$((hdr + 1)) "$tmp"
    } >"$dst"
    rm -f "$tmp"
}

make_inputs() {
    local in=$WORK/inputs
    mkdir -p "$in/photos" "$in/img" "$in/fm" "$in/work"
    ln -s "$MODELS" "$in/work/models"
    # six photos (the sixth is held out by sr train), shrunk to 64x64 cells by a CLIP grid
    local f n=0
    for f in "$PHOTOS"/*.jpg; do
        ((n++ < 6)) || break
        (cd "$in/work" && "$OLD" clip rerank --ckpt models/clip.safetensors --prompt "a photo" --top 1 \
            --grid "$in/photos/$(basename "$f" .jpg).png" --grid-cell 64 --threads 1 "$f" >/dev/null)
    done
    cp "$TESTIMG"/{clip_src_300x200.png,jpeg_gray.jpg,jpeg_rgb420.jpg,png_rgba8.png} "$in/img/"
    # Fashion-MNIST cut to 160 train and 100 test items: classify train has no step limit
    cut_idx "$FMNIST/train-images-idx3-ubyte.gz" "$in/fm/train-images-idx3-ubyte" 160 784 3
    cut_idx "$FMNIST/train-labels-idx1-ubyte.gz" "$in/fm/train-labels-idx1-ubyte" 160 1 1
    cut_idx "$FMNIST/t10k-images-idx3-ubyte.gz" "$in/fm/t10k-images-idx3-ubyte" 100 784 3
    cut_idx "$FMNIST/t10k-labels-idx1-ubyte.gz" "$in/fm/t10k-labels-idx1-ubyte" 100 1 1
    printf '%s\n' "# captions for generate" "a red sneaker" "a purple sandal" "a cyan t-shirt" >"$in/captions.txt"
    rm -rf "$in/work"
}

# ------------------------------------------------------------------- masking ----

# mask_text DIR: stdin to stdout with run-dependent parts replaced: DIR (the scratch
# folder's absolute path), durations ("0.4 s", "12ms", "1m05s", "ETA 3s"), rates
# ("58.0 it/s", "4016 images/s"), memory peaks, and JSON numbers under keys that name a
# time or a speed (step_ms, images_per_s, pairs_per_s, elapsed, ...), also when the JSON
# sits escaped inside a string (safetensors metadata).
mask_text() {
    MASK_DIR=$1 perl -pe '
        BEGIN { $d = quotemeta $ENV{MASK_DIR} }
        s/$d/<RUN>/g;
        s/\b\d+h\d+m\b|\b\d+m\d+s\b|\b\d+(?:\.\d+)?\s?(?:ms|s)\b/<T>/g;
        s/\bETA \S+/ETA <T>/g;
        s/\b\d+(?:\.\d+)?\s?[A-Za-z]+\/s\b/<R>/g;
        s/\b(peak RSS|RSS) \d+(?:\.\d+)? ?[KMG]i?B\b/$1 <M>/g;
        s/(\\?"(?:[a-z0-9]+_)*(?:ms|s|sec|secs|seconds|time|elapsed|eta|rss|rss_mb|wall|duration)\\?"\s*:\s*)-?[0-9.eE+-]+/$1<T>/g;
    '
}

# st_header / st_data FILE: the JSON header and the tensor bytes of a safetensors file
st_len() { head -c 8 "$1" | od -An -t u8 | tr -d ' \n'; }
st_header() { head -c $((8 + $(st_len "$1"))) "$1" | tail -c +9; }
st_data() { tail -c +$((9 + $(st_len "$1"))) "$1"; }

# st_entries FILE DIR: one line per tensor (name, dtype, shape, offsets) and per metadata
# entry, masked, sorted
st_entries() {
    st_header "$1" | mask_text "$2" |
        jq -r '(to_entries[] | select(.key != "__metadata__") | "tensor \(.key) \(.value | tojson)"),
               ((.__metadata__ // {}) | to_entries[] | "metadata \(.key) \(.value | tojson)")' | sort
}

# st_diff A B DIR_A DIR_B: empty when the files hold the same tensors and metadata, else
# what differs first: a header entry ("metadata state", "tensor g.0.weight header") or the
# first tensor whose bytes differ
st_diff() {
    local a=$1 b=$2 d
    d=$(diff <(st_entries "$a" "$3") <(st_entries "$b" "$4") | grep -m1 '^[<>]') || true
    if [[ -n $d ]]; then
        d=$(cut -d' ' -f1,2 <<<"${d:2}")
        [[ $d == tensor* ]] && d="$d header"
        echo "$d"
        return
    fi
    local off
    off=$(cmp <(st_data "$a") <(st_data "$b") 2>/dev/null | awk '{print $5+0}') || true
    [[ -z $off ]] && return
    st_header "$a" | jq -r --argjson o $((off - 1)) \
        'to_entries[] | select(.key != "__metadata__") | select(.value.data_offsets[0] <= $o and $o < .value.data_offsets[1]) | "tensor \(.key)"' |
        head -1 | grep . || echo "tensor bytes"
}

# file_diff A B DIR_A DIR_B: empty when the two files count as the same
file_diff() {
    local a=$1 b=$2
    case $a in
    *.safetensors) st_diff "$a" "$b" "$3" "$4" ;;
    *.json | *.jsonl | *.txt | *.csv | */_out/*.stdout | */_out/*.stderr)
        cmp -s <(mask_text "$3" <"$a") <(mask_text "$4" <"$b") || echo "content" ;;
    *) cmp -s "$a" "$b" || echo "bytes" ;;
    esac
}

# -------------------------------------------------------------- the commands ----

# t NAME THREADS [--env VAR=VAL]... [--from CASE] [--fails] -- T2I_ARGS...
# One check. In run mode: copy CASE's folder to NAME (--from), run the binary in the side's
# folder with OMP/OpenBLAS at THREADS, streams to _out/NAME.*. NAME/ is created first;
# commands write their files under it. In compare mode: compare NAME's streams and files;
# a command that exits non-zero without --fails (or zero with it) fails the check even
# when both binaries agree, since two equal failures prove nothing.
t() {
    local name=$1 threads=$2
    shift 2
    local envs=() from= fails=0
    while [[ $1 != -- ]]; do
        case $1 in
        --env) envs+=("$2"); shift ;;
        --from) from=$2; shift ;;
        --fails) fails=1 ;;
        esac
        shift
    done
    shift
    if [[ $MODE == run ]]; then
        run_case "$name" "$threads" "$from" "${envs[@]+"${envs[@]}"}" -- "$@"
    else
        compare_case "$name" "$fails" "$*"
    fi
}

run_case() {
    local name=$1 threads=$2 from=$3
    shift 3
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    if [[ -n $from ]]; then cp -a "$from" "$name"; else mkdir -p "$name"; fi
    local rc=0
    env OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" "${envs[@]+"${envs[@]}"}" \
        "$BIN" "$@" >"_out/$name.stdout" 2>"_out/$name.stderr" </dev/null || rc=$?
    echo "$rc" >"_out/$name.rc"
}

PASS=0
FAIL=0

report() { # report NAME WHAT FIRST_DIFFERENCE
    if [[ -z $3 ]]; then
        PASS=$((PASS + 1))
        printf 'same       %-22s %s\n' "$1" "$2"
    else
        FAIL=$((FAIL + 1))
        printf 'DIFFERENT  %-22s %s\n           first: %s\n' "$1" "$2" "$3"
    fi
}

compare_case() {
    local name=$1 fails=$2 what=${3:0:90} o=$WORK/old n=$WORK/new first= f d rc
    rc=$(cat "$o/_out/$name.rc")
    if (((rc == 0) != (fails == 0))); then
        FAIL=$((FAIL + 1))
        printf 'FAILED     %-22s %s\n           old binary: exit %s%s\n' "$name" "$what" "$rc" \
            "$(head -1 "$o/_out/$name.stderr" | sed 's/^/: /')"
        return
    fi
    for f in rc stdout stderr; do
        d=$(file_diff "$o/_out/$name.$f" "$n/_out/$name.$f" "$o" "$n")
        if [[ -n $d ]]; then first="$f ($d)"; break; fi
    done
    if [[ -z $first ]]; then
        local lo ln
        lo=$(cd "$o/$name" && find . \( -type f -o -type l \) | sort)
        ln=$(cd "$n/$name" && find . \( -type f -o -type l \) | sort)
        if [[ $lo != "$ln" ]]; then
            first="file list: $(diff <(echo "$lo") <(echo "$ln") | grep '^[<>]' | head -1)"
        else
            while IFS= read -r f; do
                [[ -z $f ]] && continue
                d=$(file_diff "$o/$name/$f" "$n/$name/$f" "$o" "$n")
                if [[ -n $d ]]; then first="$name/${f#./} ($d)"; break; fi
            done <<<"$lo"
        fi
    fi
    report "$name" "$what" "$first"
}

# The fixed list: shipped models first, then each trainer at 1 and 2 threads, then the
# commands that read what the trainers wrote.
cases() {
    local sm=samples/models
    # ---- text to image with the shipped models
    t gen_dalle 2 -- generate --prompt "a red sneaker" --candidates 64 --top 8 --seed 7 --threads 2 --out gen_dalle
    t gen_both 2 -- generate --prompts in/captions.txt --generator both --candidates 32 --top 4 --seed 3 \
        --threads 2 --out gen_both
    t gen_upscale 2 -- generate --prompt "a blue dress" --upscale $sm/sr.safetensors --candidates 16 --top 2 \
        --seed 5 --threads 2 --out gen_upscale
    t gen_options_t1 1 -- generate --prompt "a yellow coat" --generator both --candidates 16 --top 4 \
        --temperature 0.9 --top-k 50 --top-p 0.95 --cfg 2 --batch 8 --seed 9 --threads 1 --out gen_options_t1
    t dalle_sample_shipped 1 -- dalle sample --ckpt $sm/dalle.safetensors --prompt "a green sandal" --n 6 \
        --first 2 --seed 4 --threads 1 --out dalle_sample_shipped
    # the shipped GAN is caption-conditioned: gan sample refuses it (the message counts too)
    t gan_sample_shipped 1 --fails -- gan sample --ckpt $sm/gan.safetensors --n 4 --threads 1 --out gan_sample_shipped
    # ---- super-resolution with the shipped upscaler
    t sr_upscale_photo 2 -- sr upscale --ckpt $sm/sr.safetensors --threads 2 in/photos/Dune.png sr_upscale_photo/x4.png
    t sr_upscale_tiles 1 -- sr upscale --ckpt $sm/sr.safetensors --tile 24 --threads 1 in/img/png_rgba8.png \
        sr_upscale_tiles/x4.png
    t sr_upscale_gray 2 -- sr upscale --ckpt $sm/sr.safetensors --tile 0 --threads 2 in/img/jpeg_gray.jpg \
        sr_upscale_gray/x4.png
    t sr_eval_shipped 2 -- sr eval --ckpt $sm/sr.safetensors --data in/photos --split all --crop 48 --threads 2
    # ---- CLIP with the shipped model
    t clip_zeroshot 2 -- clip zeroshot --ckpt $sm/clip.safetensors --n 300 --json --threads 2
    t clip_zeroshot_ens 1 -- clip zeroshot --ckpt $sm/clip.safetensors --ensemble --n 100 --json --threads 1
    t clip_zeroshot_fm 1 -- clip zeroshot --ckpt $sm/clip.safetensors --data fashion-mnist:test --n 100 --json \
        --threads 1
    t clip_rerank 1 -- clip rerank --ckpt $sm/clip.safetensors --prompt "a photo of a flower" --json \
        --grid clip_rerank/grid.png --grid-cell 32 --threads 1 in/photos
    t clip_classify 2 -- clip classify in/photos/Dune.png in/img/clip_src_300x200.png --ckpt $sm/clip.safetensors \
        --labels "a beach" "a flower" "a red sneaker" --templates default --json --threads 2
    t clip_embed 1 -- clip embed --ckpt $sm/clip.safetensors --images in/photos/Aqua.png in/img/jpeg_rgb420.jpg \
        --texts "a red sneaker" "a photo" --out clip_embed/emb.safetensors --threads 1
    t tokenize 1 -- clip tokenize --vocab $sm/clip.safetensors --json "a red sneaker" "A PHOTO of an orange dress!" \
        "héllo wörld 123"
    t tokenize_ctx 1 -- clip tokenize --vocab $sm/clip.safetensors --context 16 "a blue pullover" "a purple sandal"
    # ---- data and checkpoint tools
    t data_captions 1 -- data fashion-captions --captions
    t data_fc32 1 -- data fashion-captions --split test --limit 40 --out data_fc32
    t data_fmnist 1 -- data fashion-mnist --split test --limit 30 --out data_fmnist
    t ckpt_info_shipped 1 -- ckpt info $sm/clip.safetensors $sm/dalle.safetensors $sm/gan.safetensors \
        $sm/gan_text.safetensors $sm/sr.safetensors $sm/vq.safetensors $sm/fmnist_classifier.safetensors
    t ckpt_info_json 1 -- ckpt info --json --full $sm/dalle.safetensors $sm/gan.safetensors
    t eval_fidelity_fc32 2 -- eval fidelity fashion-captions:test --limit 200 --json --threads 2
    t eval_fidelity_gen 1 -- eval fidelity gen_both --json --threads 1
    t eval_fidelity_dalle 1 -- eval fidelity dalle_sample_shipped --threads 1

    # ---- trainers: the same tiny run at 1 and 2 threads
    local th
    for th in 1 2; do
        t gan_fmnist_t$th $th -- gan train --data fashion-mnist --steps 6 --batch 16 --g-width 16 --d-width 16 \
            --ema-start 3 --sample-every 3 --ckpt-every 3 --log-every 1 --seed 2 --threads $th --out gan_fmnist_t$th
        t gan_captions_t$th $th -- gan train --data fashion-captions --text-encoder $sm/gan_text.safetensors \
            --steps 4 --batch 16 --g-width 8 --d-width 8 --mismatch 0.5 --ema-start 2 --sample-every 2 \
            --ckpt-every 2 --log-every 1 --seed 2 --threads $th --out gan_captions_t$th
        t sr_train_t$th $th -- sr train --data in/photos --preset custom --width 8 --blocks 1 --crop 32 --batch 4 \
            --steps 4 --gan-steps 2 --d-width 8 --warmup 1 --val-every 3 --ckpt-every 3 --log-every 1 --seed 3 \
            --threads $th --out sr_train_t$th
        t clip_train_t$th $th -- clip train --vision-width 32 --vision-layers 2 --vision-heads 2 --text-width 32 \
            --text-layers 2 --text-heads 2 --embed-dim 16 --vocab-size 600 --batch 32 --steps 6 --warmup 2 \
            --eval-every 3 --eval-n 64 --ckpt-every 3 --log-every 1 --seed 3 --threads $th --out clip_train_t$th
        t vq_train_t$th $th -- vq train --preset custom --width1 8 --width2 16 --res-hidden 8 --n-res 1 --code-dim 8 \
            --codes 32 --batch 16 --steps 6 --restart-every 2 --limit 512 --sample-every 3 --ckpt-every 3 \
            --log-every 1 --seed 3 --threads $th --out vq_train_t$th
        t vq_encode_t$th $th -- vq encode --ckpt vq_train_t$th/checkpoint.safetensors --data fashion-captions:train \
            --limit 320 --batch 64 --threads $th --out vq_encode_t$th/codes.safetensors
        t dalle_train_t$th $th -- dalle train --codes vq_encode_t$th/codes.safetensors --width 32 --layers 2 --heads 2 \
            --batch 8 --steps 5 --warmup 1 --sample-every 3 --ckpt-every 3 --log-every 1 --seed 3 --threads $th \
            --out dalle_train_t$th
        t classify_train_t$th $th --env T2I_FASHION_MNIST_DIR=in/fm -- classify train --epochs 1 --batch 16 --seed 3 \
            --threads $th --out classify_train_t$th
    done
    # a CLIP fine-tune of the shipped model at 64x64 (position embeddings resampled)
    t clip_finetune64 2 -- clip train --init $sm/clip.safetensors --res 64 --crop-pad 4 --erase 0.5 --batch 8 \
        --steps 2 --warmup 1 --eval-every 0 --log-every 1 --seed 2 --threads 2 --out clip_finetune64

    # ---- interrupted runs continued with --resume (the continuation runs in a copy)
    t gan_resume_a 1 -- gan train --data fashion-mnist --steps 3 --batch 16 --g-width 16 --d-width 16 --ema-start 2 \
        --sample-every 2 --ckpt-every 2 --log-every 1 --seed 5 --threads 1 --out gan_resume_a
    t gan_resume_b 2 --from gan_resume_a -- gan train --resume --steps 6 --threads 2 --out gan_resume_b
    t sr_resume_a 1 -- sr train --data in/photos --preset custom --width 8 --blocks 1 --crop 32 --batch 4 --steps 4 \
        --gan-steps 2 --d-width 8 --warmup 1 --val-every 3 --ckpt-every 3 --log-every 1 --seed 3 --stop-after 3 \
        --threads 1 --out sr_resume_a
    t sr_resume_b 1 --from sr_resume_a -- sr train --resume --threads 1 --out sr_resume_b
    t dalle_resume_a 1 -- dalle train --codes vq_encode_t1/codes.safetensors --width 32 --layers 2 --heads 2 \
        --batch 8 --steps 3 --warmup 1 --sample-every 3 --ckpt-every 3 --log-every 1 --seed 4 --threads 1 \
        --out dalle_resume_a
    t dalle_resume_b 1 --from dalle_resume_a -- dalle train --resume --steps 5 --threads 1 --out dalle_resume_b
    t clip_resume_a 1 -- clip train --vision-width 32 --vision-layers 2 --vision-heads 2 --text-width 32 \
        --text-layers 2 --text-heads 2 --embed-dim 16 --vocab-size 600 --batch 32 --steps 6 --warmup 2 \
        --eval-every 3 --eval-n 64 --ckpt-every 3 --log-every 1 --seed 4 --stop-after 3 --threads 1 --out clip_resume_a
    t clip_resume_b 1 --from clip_resume_a -- clip train --resume --threads 1 --out clip_resume_b

    # ---- commands on what the trainers wrote
    t gan_sample_t1 1 -- gan sample --ckpt gan_fmnist_t1/checkpoint.safetensors --n 12 --interp --seed 3 \
        --threads 1 --out gan_sample_t1
    t gan_sample_t2 2 -- gan sample --ckpt gan_fmnist_t2/checkpoint.safetensors --n 6 --raw --class 3 --first 5 \
        --nrow 3 --seed 4 --threads 2 --out gan_sample_t2
    t gen_trained_gan 1 -- generate --prompt "a red sneaker" --generator gan --gan gan_captions_t1/checkpoint.safetensors \
        --candidates 8 --top 2 --seed 2 --threads 1 --out gen_trained_gan
    t vq_decode 1 -- vq decode --ckpt vq_train_t1/checkpoint.safetensors --codes vq_encode_t1/codes.safetensors \
        --first 3 --n 10 --nrow 5 --threads 1 --out vq_decode
    t vq_eval 2 -- vq eval --ckpt vq_train_t2/checkpoint.safetensors --limit 256 --batch 64 --threads 2
    t vq_eval_shipped 1 -- vq eval --ckpt $sm/vq.safetensors --limit 128 --threads 1
    t dalle_sample_t1 1 -- dalle sample --ckpt dalle_train_t1/checkpoint.safetensors --prompt "a red sneaker" --n 4 \
        --seed 2 --threads 1 --out dalle_sample_t1
    t dalle_sample_nocache 2 -- dalle sample --ckpt dalle_train_t2/checkpoint.safetensors --prompt "a cyan bag" \
        --n 3 --no-cache --top-k 8 --seed 2 --threads 2 --out dalle_sample_nocache
    t sr_upscale_trained 1 -- sr upscale --ckpt sr_train_t1/l1.safetensors --tile 20 --threads 1 \
        in/img/clip_src_300x200.png sr_upscale_trained/x4.png
    t sr_eval_trained 1 -- sr eval --ckpt sr_train_t2/checkpoint.safetensors --data in/photos --crop 64 --threads 1
    t sr_compare 1 -- sr compare --image in/photos/Dune.png --ckpt $sm/sr.safetensors sr_train_t1/l1.safetensors \
        --size 32 --zoom 2 --out sr_compare/cmp.png --threads 1
    t classify_eval 1 --env T2I_FASHION_MNIST_DIR=in/fm -- classify eval --ckpt classify_train_t1/checkpoint.safetensors \
        --threads 1
    t eval_fid_gan 2 -- eval fid --gan gan_fmnist_t1/checkpoint.safetensors --n 200 --kid-size 50 --kid-subsets 3 \
        --json --threads 2
    t eval_fid_fake 1 -- eval fid --fake gan_sample_t1 --n 12 --kid-size 6 --kid-subsets 2 --seed 2 --threads 1
    t eval_fidelity_trained 1 -- eval fidelity dalle_sample_t1 --json --threads 1
    t ckpt_info_trained 1 -- ckpt info --json --full gan_fmnist_t1/checkpoint.safetensors \
        dalle_train_t1/checkpoint.safetensors vq_encode_t1/codes.safetensors
    t ckpt_convert 1 -- ckpt convert gan_captions_t1/checkpoint.safetensors ckpt_convert/gan.safetensors \
        --drop g. d. --rename ema.=
    t ckpt_convert_f16 1 -- ckpt convert clip_train_t1/checkpoint.safetensors ckpt_convert_f16/clip.safetensors \
        --dtype f16 --keep-f32 logit --meta note=test
    t ckpt_average 1 -- ckpt average clip_train_t1/checkpoint.safetensors clip_train_t2/checkpoint.safetensors \
        --out ckpt_average/avg.safetensors
}

# run_side SIDE BINARY: every command through BINARY in WORK/SIDE
run_side() {
    local dir=$WORK/$1
    mkdir -p "$dir/_out" "$dir/samples"
    ln -s "$MODELS" "$dir/samples/models"
    ln -s "$WORK/inputs" "$dir/in"
    (cd "$dir" && MODE=run BIN=$2 cases)
}

# -------------------------------------------------------------------- main ----

T0=$SECONDS
make_inputs
run_side old "$OLD"
T1=$SECONDS
run_side new "$NEW"
T2=$SECONDS
echo "old: $OLD ($((T1 - T0)) s with the inputs)"
echo "new: $NEW ($((T2 - T1)) s)"
MODE=compare cases
# nothing written outside the commands' folders, nothing missing
lo=$(cd "$WORK/old" && find . -path ./_out -prune -o \( -type f -o -type l \) -print | sort)
ln=$(cd "$WORK/new" && find . -path ./_out -prune -o \( -type f -o -type l \) -print | sort)
report all_files "every file in the two scratch folders" \
    "$([[ $lo == "$ln" ]] || diff <(echo "$lo") <(echo "$ln") | grep '^[<>]' | head -1)"
echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
