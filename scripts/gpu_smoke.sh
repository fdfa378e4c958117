#!/usr/bin/env bash
# GPU smoke test of dropout-tune on a one-GPU machine without network (the session's device tool runs it).
# Needs: .whl/ (datasets and its small deps as wheels) and .devcarry/site/ (the embedded model in fp16 and the
# Rotten Tomatoes file), made on the CPU machine by scripts/make_gpu_carry.sh. Each step has a timeout
# so the whole script fits a 5-minute device slot.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DROPOUT_TUNE_CACHE=/tmp/dtcache
OUT=${OUT:-/tmp/gpu_smoke}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:$PWD/.devcarry/site:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv
step() { echo; echo "=== $1 ($(date +%T))"; }
step "exactness on CUDA + attention-dropout cost"
timeout 100 python3 scripts/gpu_checks.py 2>&1 | grep -v -i warn | tee "$OUT/gpu_checks.md"
step "recipe rotten_tomatoes on one GPU (bf16, full train split, 2 epochs)"
timeout 130 python3 -m dropout_tune.train recipes/rotten_tomatoes.yaml training.bf16=true data.max_train=null \
  training.epochs=2 training.batch_size=32 training.output_dir=/tmp/runs/rt mc_eval.enabled=true mc_eval.mode=replicate 2>&1 | grep -v -E "it/s\]|s/it\]" | tail -12
cp /tmp/runs/rt/metrics.json "$OUT/rt_metrics.json" 2>/dev/null; cp /tmp/runs/rt/learning_curve.png /tmp/runs/rt/reliability.png "$OUT/" 2>/dev/null
step "recipe rotten_tomatoes under accelerate launch with the FSDP config (1 process)"
timeout 80 python3 -m accelerate.commands.accelerate_cli launch --config_file recipes/accelerate/fsdp.yaml \
  --num_processes 1 -m dropout_tune.train recipes/rotten_tomatoes.yaml training.max_steps=40 training.bf16=true \
  training.eval_strategy=no data.max_eval=500 training.output_dir=/tmp/runs/fsdp 2>&1 | grep -v -E "it/s\]|s/it\]" | tail -25
step "done"
