#!/usr/bin/env bash
# cli_mpi.sh - data-parallel training under Open MPI (run/dist.h): for each trainer, a few
# steps with 2 ranks against 1 process at the same global batch must give the same losses
# (metrics.jsonl) and final weights within a stated tolerance (tests/mpi_close.py explains
# it: the ranks add their sums in another order, and Adam turns the rounding noise of a
# zero gradient into steps of +-lr). Each comparison has a negative control: the same run
# with one synchronisation switched off (T2I_DIST_BREAK, run/dist.h) must NOT compare equal,
# which shows that the tolerance would catch a wrong gradient average or an unsynchronised
# BatchNorm ("scale" sums the gradients without dividing by the rank count: Adam all but
# absorbs that in the weights, not in its moments, which the checkpoints hold). Rank 1 runs
# in a working folder of its own, which must stay empty: only rank 0 writes. Skipped (77)
# when mpirun is missing or t2i was built without MPI.
source "$(dirname "$0")/lib.sh"
export T2I_PROGRESS_SECONDS=1000
command -v mpirun >/dev/null || { echo "cli_mpi: skipped (no mpirun; apt-get install openmpi-bin)"; exit 77; }
grep -q "^T2I_MPI:BOOL=ON" "$(dirname "$T2I")/CMakeCache.txt" 2>/dev/null ||
  { echo "cli_mpi: skipped (t2i built without MPI)"; exit 77; }
# a container: root is allowed, no ssh or resource manager, shared memory between the ranks
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=false
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
CLOSE="python3 $ROOT/tests/mpi_close.py"
# In a sanitizer build (tests/sanitize.sh), Open MPI's plugins leak at MPI_Finalize (from
# modules unloaded by then, so no suppression can name them): leak checking is off for the
# ranks that mpirun starts, and stays on for every single-process run, here and elsewhere.
MPI_ASAN=${ASAN_OPTIONS:-}
MPI_ASAN=${MPI_ASAN//detect_leaks=1/detect_leaks=0}
mpi2() { ASAN_OPTIONS=$MPI_ASAN mpirun -np 2 -x T2I_PROGRESS_SECONDS -x T2I_DIST_BREAK -x ASAN_OPTIONS -x UBSAN_OPTIONS \
  "$T2I" "$@"; }
export T2I_DIST_BREAK=
# mpi2w DIR1 ARGS...: 2 ranks as mpi2, but rank 1 in a working folder of its own, DIR1 (made
# empty), while rank 0 runs in $TMP: with a relative --out, anything rank 1 writes lands in
# DIR1, which must stay empty (only rank 0 writes config, metrics, samples, checkpoints)
mpi2w() {
  local d1=$1
  shift
  rm -rf "$d1" && mkdir -p "$d1"
  ASAN_OPTIONS=$MPI_ASAN mpirun -x T2I_PROGRESS_SECONDS -x T2I_DIST_BREAK -x ASAN_OPTIONS -x UBSAN_OPTIONS \
    -np 1 -wdir "$TMP" "$T2I" "$@" : -np 1 -wdir "$d1" "$T2I" "$@"
}

# same() NAME CMD...: CMD run once alone (--out $TMP/NAME.1) and with 2 ranks (--out $TMP/NAME.2)
# must agree, and rank 1 must write nothing; with each BREAK in $BREAKS they must not agree.
same() {
  local name=$1
  shift
  "$T2I" "$@" --out "$TMP/$name.1" >"$TMP/$name.1.log" 2>&1 || { fail "$name: one process: $(tail -3 "$TMP/$name.1.log")"; return; }
  mpi2w "$TMP/$name.w1" "$@" --out "$name.2" >"$TMP/$name.2.log" 2>&1 || { fail "$name: 2 ranks: $(tail -3 "$TMP/$name.2.log")"; return; }
  [ -s "$TMP/$name.2/checkpoint.safetensors" ] || fail "$name: 2 ranks: rank 0 wrote no checkpoint"
  [ -z "$(ls -A "$TMP/$name.w1")" ] || fail "$name: rank 1 wrote files: $(cd "$TMP/$name.w1" && find . -type f | head -5)"
  $CLOSE $CLOSE_ARGS "$TMP/$name.1" "$TMP/$name.2" >"$TMP/$name.cmp" || fail "$name: 2 ranks differ from 1: $(cat "$TMP/$name.cmp")"
  # rank 0's stdout is the single process's plus its line on communication; ranks above 0 print nothing
  [ "$(grep -v ' ranks; rank 0 spent ' "$TMP/$name.2.log" | grep -c "^$name train:")" = \
    "$(grep -c "^$name train:" "$TMP/$name.1.log")" ] || fail "$name: ranks above 0 wrote to stdout: $(cat "$TMP/$name.2.log")"
  grep -q "^$name train: 2 ranks; rank 0 spent .* MB a step" "$TMP/$name.2.log" ||
    fail "$name: no line on communication: $(cat "$TMP/$name.2.log")"
  grep -q '"ranks":2' "$TMP/$name.2/config.json" || fail "$name: config.json lacks the rank count"
  for br in $BREAKS; do
    T2I_DIST_BREAK=$br mpi2 "$@" --out "$TMP/$name.$br" >"$TMP/$name.$br.log" 2>&1 || { fail "$name ($br off) failed"; continue; }
    if $CLOSE $CLOSE_ARGS "$TMP/$name.1" "$TMP/$name.$br" >"$TMP/$name.$br.cmp"; then
      fail "$name: with $br unsynchronised the runs still compare equal: the test cannot see that error"
    fi
  done
}

# GAN: BatchNorm in G and D (synchronised), class conditions with mismatched pairs that wrap
# around the global batch, noise drawn for the global batch
CLOSE_ARGS="" BREAKS="bn grad scale" same gan gan train --data fashion-mnist --steps 4 --g-width 8 --d-width 8 --batch 8 \
  --mismatch 1 --threads 1 --sample-every 2 --log-every 1
# VQ: the codebook's EMA sums and code restarts over the global batch (gathered encodings)
CLOSE_ARGS="" BREAKS="grad scale codebook" same vq vq train --preset custom --width1 8 --width2 16 --res-hidden 8 --n-res 1 \
  --code-dim 8 --codes 32 --limit 64 --batch 8 --restart-every 2 --restart-threshold 1 --log-every 1 --sample-every 3 \
  --seed 5 --steps 4 --threads 1

# DALL-E: caption drops drawn for the global batch; codes from the VQ run above
"$T2I" vq encode --ckpt "$TMP/vq.1/checkpoint.safetensors" --data fashion-captions --limit 256 --threads 1 \
  --out "$TMP/codes.safetensors" >/dev/null 2>&1 || fail "vq encode"
DALLE=(dalle train --codes "$TMP/codes.safetensors" --preset custom --width 32 --layers 1 --heads 2 --text-len 12
       --text-vocab 600 --batch 8 --warmup 5 --lr 3e-3 --cond-drop 0.5 --sample-every 10 --ckpt-every 10 --log-every 1
       --threads 1)
CLOSE_ARGS="" BREAKS="grad scale" same dalle "${DALLE[@]}" --steps 4

# SR: crops drawn for the global batch, an L1 phase then RaGAN steps (relativistic means over
# the global batch). Its D has no BatchNorm, so no parameter has a true gradient of zero whose
# Adam steps are pure rounding noise (mpi_close.py): its weights agree to 1.4e-5 and are held
# to 1e-4, which catches per-rank RaGAN means (3.4e-4 in D; the losses move by 4e-5 only).
mkdir -p "$TMP/photos"
cp "$ROOT/tests/data/img/clip_src_300x200.png" "$TMP/photos/a.png"
cp "$ROOT/tests/data/img/rs_src_rgb64.png" "$TMP/photos/b.png"
cp "$ROOT/tests/data/img/clip_out_224.png" "$TMP/photos/c.png"
cp "$ROOT/tests/data/img/png_rgb8.png" "$TMP/photos/d.png"
SR=(sr train --data "$TMP/photos" --scale 2 --preset custom --width 8 --blocks 1 --crop 32 --batch 4 --d-width 8
    --steps 3 --gan-steps 3 --val-every 3 --ckpt-every 100 --log-every 1 --seed 7 --threads 1)
CLOSE_ARGS="--wtol 1e-4" BREAKS="grad scale ragan" same sr "${SR[@]}"

# CLIP: the contrastive loss over the global batch (embeddings gathered from the ranks), the
# convolutional stem's BatchNorm synchronised;
# the control "loss" is the per-rank loss over each rank's 4 pairs
"$T2I" data fashion-captions --split train --out "$TMP/fc" --limit 24 >/dev/null 2>&1 || fail "t2i data"
CLOSE_ARGS="" BREAKS="loss grad scale bn" same clip clip train --data "$TMP/fc" --res 16 --patch 8 --vision-width 16 \
  --vision-layers 1 --vision-heads 2 --text-width 16 --text-layers 1 --text-heads 2 --embed-dim 8 --context 12 \
  --vocab-size 600 --batch 8 --eval-every 0 --steps 3 --log-every 1 --threads 1

# ---- resume across MPI and single-process runs (the GAN: RNG, loader position, BatchNorm)
GAN=(gan train --data fashion-mnist --g-width 8 --d-width 8 --batch 8 --mismatch 1 --threads 1 --sample-every 2
     --log-every 1)
# an MPI run of 2 steps resumed to 4 equals the uninterrupted 4-step MPI run, bit for bit
mpi2 "${GAN[@]}" --steps 2 --out "$TMP/r2" >/dev/null 2>&1 || fail "MPI run of 2 steps"
[ "$(grep -c '"loss_d"' "$TMP/r2/metrics.jsonl")" = 2 ] || fail "2-step MPI run: not 2 metrics lines"
cp -r "$TMP/r2" "$TMP/r2one"
mpi2 gan train --resume --steps 4 --threads 1 --out "$TMP/r2" >/dev/null 2>&1 || fail "MPI resume"
cmp -s "$TMP/gan.2/checkpoint.safetensors" "$TMP/r2/checkpoint.safetensors" ||
  fail "MPI run stopped and resumed differs from the uninterrupted MPI run"
# the MPI checkpoint resumes in one process (as one process would have gone on, within the tolerance)
"$T2I" gan train --resume --steps 4 --threads 1 --out "$TMP/r2one" >/dev/null 2>&1 ||
  fail "single-process resume of an MPI run"
$CLOSE --weights-only "$TMP/gan.1" "$TMP/r2one" >"$TMP/r2one.cmp" || fail "MPI checkpoint resumed alone: $(cat "$TMP/r2one.cmp")"
# and a single-process checkpoint resumes under MPI
"$T2I" "${GAN[@]}" --steps 2 --out "$TMP/r1" >/dev/null 2>&1 || fail "one process, 2 steps"
mpi2 gan train --resume --steps 4 --threads 1 --out "$TMP/r1" >/dev/null 2>&1 || fail "MPI resume of a single-process run"
$CLOSE --weights-only "$TMP/gan.1" "$TMP/r1" >"$TMP/r1.cmp" || fail "single-process checkpoint resumed by 2 ranks: $(cat "$TMP/r1.cmp")"

# the same for VQ (restarts draw from the run RNG; the codebook buffers) and CLIP (--stop-after)
VQ=(vq train --preset custom --width1 8 --width2 16 --res-hidden 8 --n-res 1 --code-dim 8 --codes 32 --limit 64
    --batch 8 --restart-every 2 --restart-threshold 1 --log-every 1 --sample-every 3 --seed 5 --threads 1)
mpi2 "${VQ[@]}" --steps 2 --out "$TMP/rv" >/dev/null 2>&1 || fail "MPI vq run of 2 steps"
mpi2 vq train --resume --steps 4 --threads 1 --out "$TMP/rv" >/dev/null 2>&1 || fail "MPI vq resume"
cmp -s "$TMP/vq.2/checkpoint.safetensors" "$TMP/rv/checkpoint.safetensors" ||
  fail "vq: MPI run resumed differs from the uninterrupted MPI run"
mpi2 clip train --data "$TMP/fc" --res 16 --patch 8 --vision-width 16 --vision-layers 1 --vision-heads 2 --text-width 16 \
  --text-layers 1 --text-heads 2 --embed-dim 8 --context 12 --vocab-size 600 --batch 8 --eval-every 0 --steps 3 \
  --log-every 1 --threads 1 --stop-after 2 --out "$TMP/rc" >/dev/null 2>&1 || fail "MPI clip run with --stop-after 2"
mpi2 clip train --resume --threads 1 --out "$TMP/rc" >/dev/null 2>&1 || fail "MPI clip resume"
cmp -s "$TMP/clip.2/checkpoint.safetensors" "$TMP/rc/checkpoint.safetensors" ||
  fail "clip: MPI run stopped and resumed differs from the uninterrupted MPI run"
# DALL-E (caption drops from the run RNG; 4 steps inside the warm-up, so --steps 2 plans the
# same learning rates) and SR (--stop-after 4: one step into phase 2, its crops, RaGAN and
# l1.safetensors): stopped and resumed under MPI equals the uninterrupted MPI run bit for bit,
# and the MPI checkpoint resumed in one process equals the single-process run
mpi2 "${DALLE[@]}" --steps 2 --out "$TMP/rd" >/dev/null 2>&1 || fail "MPI dalle run of 2 steps"
cp -r "$TMP/rd" "$TMP/rdone"
mpi2 dalle train --resume --steps 4 --threads 1 --out "$TMP/rd" >/dev/null 2>&1 || fail "MPI dalle resume"
cmp -s "$TMP/dalle.2/checkpoint.safetensors" "$TMP/rd/checkpoint.safetensors" ||
  fail "dalle: MPI run resumed differs from the uninterrupted MPI run"
"$T2I" dalle train --resume --steps 4 --threads 1 --out "$TMP/rdone" >/dev/null 2>&1 || fail "single-process dalle resume"
$CLOSE --weights-only "$TMP/dalle.1" "$TMP/rdone" >"$TMP/rdone.cmp" || fail "dalle: MPI checkpoint resumed alone: $(cat "$TMP/rdone.cmp")"
mpi2 "${SR[@]}" --stop-after 4 --out "$TMP/rs" >/dev/null 2>&1 || fail "MPI sr run with --stop-after 4"
cp -r "$TMP/rs" "$TMP/rsone"
mpi2 sr train --resume --threads 1 --out "$TMP/rs" >/dev/null 2>&1 || fail "MPI sr resume"
cmp -s "$TMP/sr.2/checkpoint.safetensors" "$TMP/rs/checkpoint.safetensors" ||
  fail "sr: MPI run stopped and resumed differs from the uninterrupted MPI run"
"$T2I" sr train --resume --threads 1 --out "$TMP/rsone" >/dev/null 2>&1 || fail "single-process sr resume"
$CLOSE --weights-only --wtol 1e-4 "$TMP/sr.1" "$TMP/rsone" >"$TMP/rsone.cmp" || fail "sr: MPI checkpoint resumed alone: $(cat "$TMP/rsone.cmp")"

# ---- a rank that dies ends the job: non-zero exit, a message naming the rank, the last
# checkpoint intact (written atomically by rank 0)
mpi2 gan train --data fashion-mnist --steps 100000 --g-width 8 --d-width 8 --batch 8 --threads 1 --ckpt-every 2 \
  --sample-every 1000 --out "$TMP/die" >"$TMP/die.out" 2>"$TMP/die.err" &
job=$!
rank1=""
for _ in $(seq 6000); do  # as long as the job lives (a loaded machine is slow), at most 10 min
  if [ -s "$TMP/die/checkpoint.safetensors" ]; then
    # the process of rank 1 of this job: its environment names the rank, its command line the folder
    for p in $(pgrep -f -- "--out $TMP/die" || true); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then rank1=$p; fi
    done
    [ -n "$rank1" ] && break
  fi
  kill -0 $job 2>/dev/null || break
  sleep 0.1
done
if [ -z "$rank1" ]; then
  fail "rank death: no checkpoint or no rank 1 found: $(cat "$TMP/die.err")"
  kill $job 2>/dev/null
  wait $job 2>/dev/null
else
  kill -9 "$rank1"
  wait $job
  rc=$?
  [ $rc -ne 0 ] || fail "rank death: the job exited 0"
  grep -q "rank 1" "$TMP/die.err" || fail "rank death: the message does not name rank 1: $(cat "$TMP/die.err")"
  "$T2I" gan sample --ckpt "$TMP/die/checkpoint.safetensors" --n 2 --out "$TMP/die_s" >/dev/null 2>&1 ||
    fail "rank death: the last checkpoint does not load"
fi

# a batch that does not split evenly is refused before anything runs
mpi2 gan train --data fashion-mnist --steps 1 --batch 7 --out "$TMP/odd" >/dev/null 2>"$TMP/err" && fail "batch 7 over 2 ranks ran"
grep -q -- "--batch 7 does not split evenly over 2 ranks" "$TMP/err" || fail "odd batch message: $(cat "$TMP/err")"

finish
