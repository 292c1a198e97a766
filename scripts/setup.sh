#!/usr/bin/env bash
# Set-up on a fresh Debian/Ubuntu machine, idempotent: .venv with torch, the project and its test,
# dashboard, examples and tracking extras; as root, the Debian packages for the data (dataset-fashion-mnist) and the
# report render test (chromium). The plain route is in README.md (Install).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing ${need[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "setup: not installed: ${need[*]} (needs root and apt-get; tests that use them will skip)"
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision, ray.tune, optuna, pandas, rich, scipy, sklearn, pytest, xdist, moto.server, tensorboard, optuna_dashboard, mlflow, trainables" 2>/dev/null; then
    echo "setup: installing Python packages into .venv (torch is several GB)"
    .venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test,dashboard,examples,tracking]'
fi
