#!/usr/bin/env bash
# Sets up everything the project needs on a Debian machine with Python 3.11:
#   - Debian packages: dataset-fashion-mnist (real Fashion-MNIST, offline), chromium (the
#     dashboard's browser test) and postgresql (the search's PostgreSQL study test), when missing
#     (as root, or through sudo);
#   - a virtual environment in .venv with torch==2.14.1, torchvision==0.29.1 and the project
#     (pip install -e ".[dev]").
# Safe to run again: it skips what is already there (a stamp records the pyproject.toml hash).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

want=(dataset-fashion-mnist chromium postgresql)
missing=()
for pkg in "${want[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    say "need root (or sudo) to install: ${missing[*]}"; exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=""
for cand in python3.11 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    python="$cand"; break
  fi
done
[ -n "$python" ] || { say "Python >= 3.11 not found"; exit 1; }

stamp=.venv/.ibnn-setup
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  say "environment up to date (.venv)"
  exit 0
fi
[ -x .venv/bin/python ] || { say "creating .venv with $python"; "$python" -m venv .venv; }
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
say "installing torch==2.14.1 torchvision==0.29.1 (several GB; a few minutes the first time)"
"${pip[@]}" install torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
say "installing the project and its dependencies"
"${pip[@]}" install -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, torchvision, ray, optuna, pyarrow, plotly, ibnn" \
  || { say "installation incomplete: see the pip output above"; exit 1; }
echo "$hash" > "$stamp"
say "done"
