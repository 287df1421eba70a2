#!/usr/bin/env bash
# Provides one device session's measurements in one command: installs the carried wheels (if not yet
# installed on this machine), builds the bench data and random-init models (idempotent), then runs
# the named jobs, each under its own time limit, results under $OUT (JSON, SVG) and every log in
# $OUT/logs.tgz. The exact commands behind every figure in docs/benchmarks.md (issues 15 and 16).
#
#   bash benchmarks/gpu_session.sh mg2 product2 mg2knob      # on a 2-GPU machine
#   bash benchmarks/gpu_session.sh qlora2 qwen2
#   bash benchmarks/gpu_session.sh mg4 product4              # on a 4-GPU machine
#   bash benchmarks/gpu_session.sh infer kobart train        # on one GPU
#   bash benchmarks/gpu_session.sh pipeline                  # one GPU, alone; then, same warm machine:
#   bash benchmarks/gpu_session.sh pipeline-wait             # (again until it reports complete)
#   bash benchmarks/gpu_session.sh pipeline-kobart           # (pipeline-kobart-wait if it did not finish)
#   bash benchmarks/gpu_session.sh levers levers24           # on one GPU (~8 + ~4 min; split across calls)
#   bash benchmarks/gpu_session.sh infer-gqa                 # on one GPU: GQA decode attention vs stock SDPA (issue 16)
#   bash benchmarks/gpu_session.sh load                      # on one GPU: model loading, engine vs the CPU order (~1 min)
#   bash benchmarks/gpu_session.sh infer-ngram               # on one GPU: what no_repeat_ngram_size costs (issue 16)
#   bash benchmarks/gpu_session.sh levers3                   # on one GPU: effective batch 64, grouped vs rebalanced (~5 min)
#   bash benchmarks/gpu_session.sh infer-greedy kobart       # on one GPU: greedy 3B and KoBART beams with cuDNN attention off (~3 min)
#   bash benchmarks/gpu_session.sh decode                    # on one GPU: the 3B pass (greedy; beams 4 on 128) split into prompt pass and decoding, profiled
#
# Wheels: .whl/*/*.whl in the checkout (or ../.whl beside a copy of it; see /work/.library/device/README.md).
set -u
OUT=${OUT:-/tmp/out}
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # keep NVLink multicast off
if [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    $(ls "$HERE"/.whl/*/*.whl 2>/dev/null || ls "$HERE"/../.whl/*/*.whl) || exit 3
  # Bytecode now, as a user's `pip install` makes it: without it the first stage to import trl, peft
  # and datasets compiled them (~13 s of the 3B train stage's "import" in the session-3 pipeline).
  python3 -m compileall -q -j 0 /tmp/site > /dev/null
  touch /tmp/site/.installed
fi
export PYTHONPATH=/tmp/site
LOGS=/tmp/logs
mkdir -p "$LOGS" "$OUT"
pack() { tar czf "$OUT/logs.tgz" -C / tmp/logs $(cd / && ls -d tmp/bench/resume-bench/*/*/run.log tmp/bench/runs/*/run.log tmp/prod*/ws/.dialsum/worker.log tmp/prod*/ws/runs/*/run.log tmp/pipe*/ws/.dialsum/worker.log tmp/pipe*/ws/runs/*/run.log tmp/pipe*/sampler.log 2>/dev/null) 2>/dev/null; }
trap pack EXIT
# Leftover stage processes of a job that ran out of time (ours: this machine runs nothing else).
reap() { nvidia-smi --query-compute-apps=pid --format=csv,noheader | xargs -r kill -9 2>/dev/null; sleep 2; }

nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'gpus', torch.cuda.device_count())"

job() {  # job NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  echo "=== $name exit $rc in $((SECONDS - t0))s"
  tail -n 14 "$LOGS/$name.log"
  reap
}

# The pipeline jobs leave a detached worker (own session) running stages across device calls: no
# reap after them, and the limit is above --max-wait so pipeline.py returns and reports by itself.
pjob() {  # pjob NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s, no reap) $(date -u +%H:%M:%S)"
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  echo "=== $name exit $? in $((SECONDS - t0))s (3: not finished yet, run the -wait job)"
  tail -n 30 "$LOGS/$name.log"
}
pipe() {  # pipe NAME ROOT ARGS... : benchmarks/pipeline.py, its report in $OUT/NAME.json
  local name=$1 root=$2; shift 2
  pjob "$name" 560 python3 benchmarks/pipeline.py --root "$root" --out "$OUT/${name%-wait}.json" "$@"
}

setup() {  # SHAPES
  job setup-$1 240 python3 benchmarks/common.py --root /tmp/bench --shapes "$1"
}

for name in "$@"; do
  case $name in
    mg2) setup llama3b; job mg2 260 python3 benchmarks/multi_gpu.py --root /tmp/bench --scenarios 1,ddp2,side2 --steps 20 --out "$OUT/mg2.json" ;;
    mg2knob) job mg2knob 110 python3 benchmarks/multi_gpu.py --root /tmp/bench --scenarios ddp2 --steps 20 --tag=-knob \
        --ddp '{"ddp_find_unused_parameters": false, "ddp_static_graph": true, "ddp_broadcast_buffers": false}' --out "$OUT/mg2knob.json" ;;
    product2) job product2 260 python3 benchmarks/product_multi_gpu.py --root /tmp/prod2 --gpus 2 --out "$OUT" ;;
    qlora2) setup llama3b; job qlora2 180 python3 benchmarks/multi_gpu.py --root /tmp/bench --qlora --batch 8 --ckpt --scenarios 1,ddp2 \
        --match-samples --steps 16 --skip 4 --out "$OUT/qlora2.json" ;;
    qwen2) setup qwen3-4b; job qwen2 420 python3 benchmarks/multi_gpu.py --root /tmp/bench --shape qwen3-4b --batch 8 --scenarios 1,ddp2 \
        --match-samples --steps 60 --skip 6 --out "$OUT/qwen2.json" ;;
    qwen2acc) setup qwen3-4b; job qwen2acc 300 python3 benchmarks/multi_gpu.py --root /tmp/bench --shape qwen3-4b --batch 8 --grad-accum 4 \
        --scenarios 1,ddp2 --match-samples --steps 16 --skip 2 --tag=-acc4 --out "$OUT/qwen2acc.json" ;;
    mg4) setup llama3b; job mg4 420 python3 benchmarks/multi_gpu.py --root /tmp/bench --scenarios 1,ddp4,ddp4+rb --match-samples \
        --steps 40 --skip 4 --out "$OUT/mg4.json" ;;
    product4) job product4 160 python3 benchmarks/product_multi_gpu.py --root /tmp/prod4 --gpus 4 --phases side,cancel --out "$OUT" ;;
    infer) setup llama3b; job infer 330 python3 benchmarks/inference_speed.py --root /tmp/bench --shape llama3b --fast \
        --batch-sizes 128,256 --out "$OUT/infer_llama3b.json" ;;
    infer-gqa) setup llama3b; job infer-gqa 420 python3 benchmarks/inference_speed.py --root /tmp/bench --shape llama3b --fast \
        --fast-variants eager-sdpa,static-gqa,static-sdpa --fast-beams 1,4 --batch-sizes 256 --beam-batch-sizes 64 \
        --beam-limit 128 --out "$OUT/infer_gqa.json" ;;
    # The configs' n-gram ban (3B: 3, KoBART: 2) vs none, transformers' processor, 64 new tokens as infer-gqa;
    # 3B: each twice, so the first pass of a shape (slower, seen 2026-11-26) has a warm twin to compare with.
    infer-ngram) setup llama3b; setup kobart; job infer-ngram 300 python3 benchmarks/inference_speed.py --root /tmp/bench --shape llama3b \
        --fast --fast-variants eager-sdpa --no-repeat-ngrams 0,3,0,3 --fast-beams 1,4 --batch-sizes 256 --beam-batch-sizes 64 \
        --beam-limit 128 --out "$OUT/infer_ngram.json"; job infer-ngram-kobart 150 python3 benchmarks/inference_speed.py \
        --root /tmp/bench --shape kobart --fast --fast-variants static-sdpa --no-repeat-ngrams 0,2 --fast-beams 4 \
        --beam-batch-sizes 512 --out "$OUT/infer_ngram_kobart.json" ;;
    # Greedy only, eager reference first: with the engine's kernel choices (cuDNN attention off) since session 4
    infer-greedy) setup llama3b; job infer-greedy 200 python3 benchmarks/inference_speed.py --root /tmp/bench --shape llama3b --fast \
        --fast-variants eager-sdpa,eager-sdpa,static-gqa --fast-beams 1 --batch-sizes 256 --out "$OUT/infer_greedy.json" ;;
    # Where the greedy 3B pass goes: prompt pass vs decoding per batch, top kernels (issue 16 item 2)
    decode) setup llama3b; job decode 200 python3 benchmarks/decode_profile.py --root /tmp/bench --shape llama3b \
        --batch-size 256 --out "$OUT/decode.json"; job decode-beams 200 python3 benchmarks/decode_profile.py --root /tmp/bench \
        --shape llama3b --batch-size 64 --num-beams 4 --limit 128 --out "$OUT/decode_beams.json" ;;
    kobart) setup kobart; job kobart 200 python3 benchmarks/inference_speed.py --root /tmp/bench --shape kobart --fast \
        --fast-beams 4 --beam-batch-sizes 512 --out "$OUT/infer_kobart.json" ;;
    resume) setup llama3b; job resume 520 python3 benchmarks/resume.py --root /tmp/bench --steps 60 --stop-at 40 ;;
    train) setup llama3b; job train 330 python3 benchmarks/train_throughput.py --root /tmp/bench --only llama3b --pick "llama3b:5" --out "$OUT/train.json" ;;
    # The whole competition pipeline through the product (issue 16 item 3); the 3B one takes ~15 min.
    pipeline) pipe pipeline /tmp/pipe --only llama3b --start --wait --max-wait ${PIPE_MAX_WAIT:-450} ;;
    pipeline-wait) pipe pipeline-wait /tmp/pipe --wait --max-wait 540 ;;
    pipeline-kobart) pipe pipeline-kobart /tmp/pipe-kobart --only kobart --start --wait --max-wait ${PIPE_MAX_WAIT:-450} ;;
    pipeline-kobart-wait) pipe pipeline-kobart-wait /tmp/pipe-kobart --wait --max-wait 540 ;;
    # Issue 16 training levers: eager vs fused LoRA vs per-layer compile (64-token buckets) vs both, 50 steps
    # each with the same data order; recompiles and graph breaks land in each run.log (logs.tgz).
    levers) setup llama3b; job levers 480 env TORCH_LOGS=recompiles,graph_breaks python3 benchmarks/train_levers.py \
        --root /tmp/bench --variants eager,fused,compile,compile+fused --steps 50 --out "$OUT/levers.json" ;;
    levers2) setup llama3b; job levers2 260 env TORCH_LOGS=recompiles,graph_breaks python3 benchmarks/train_levers.py \
        --root /tmp/bench --variants eager,compile+fused --steps 50 --out "$OUT/levers2.json" ;;
    # Same effective batch (64), fewer larger micro-batches: bs 16 x 4 grouped vs bs 32 x 2 rebalanced (issue 16)
    levers3) setup llama3b; job levers3 480 env TORCH_LOGS=recompiles,graph_breaks python3 benchmarks/train_levers.py \
        --root /tmp/bench --variants eager-eb64,levers-eb64,rebalance32-eb64 --steps 30 --out "$OUT/levers3.json" ;;
    levers24) setup llama3b; job levers24 240 env TORCH_LOGS=recompiles,graph_breaks python3 benchmarks/train_levers.py \
        --root /tmp/bench --variants 24gb,24gb+levers --steps 50 --out "$OUT/levers24.json" ;;
    # Issue 16 item 3: each step of the engine's train and infer loading (weights straight onto the GPU)
    # next to the order before it (CPU materialise, resize, move; CPU merge), same process, both shapes.
    load) setup llama3b; setup kobart; job load 150 python3 benchmarks/load_speed.py --root /tmp/bench --shapes llama3b,kobart \
        --out "$OUT/load.json" ;;
    *) echo "unknown job $name" ;;
  esac
done
