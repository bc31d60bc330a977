#!/usr/bin/env bash
# Paragoger SD launcher for Linux and macOS.
#   ./webui.sh            create venv/ on first run, install torch and requirements.txt, start the app
#   ./webui.sh --test     the same set-up plus requirements-test.txt, then run the whole test suite (extra
#                         arguments go to pytest)
# Settings (also read from webui-user.sh when present, as in AUTOMATIC1111):
#   COMMANDLINE_ARGS  flags for app.py, e.g. "--listen --ckpt-dir /old/a1111/models/Stable-diffusion"
#   TORCH_COMMAND     how torch is installed (default: the CUDA build on Linux x86_64, from the package index)
#   python_cmd        the Python to create the venv with (default python3; 3.10 to 3.12)
#   venv_dir          where the venv lives (default venv)
set -euo pipefail
cd "$(dirname "$0")"
if [[ -f webui-user.sh ]]; then
    # shellcheck disable=SC1091
    source ./webui-user.sh
fi
python_cmd="${python_cmd:-python3}"
venv_dir="${venv_dir:-venv}"
TORCH_COMMAND="${TORCH_COMMAND:-pip install torch==2.14.1 torchvision==0.29.1}"

if [[ ! -x "$venv_dir/bin/python" ]]; then
    echo "Creating a Python environment in $venv_dir (first run only)..."
    "$python_cmd" -m venv "$venv_dir"
fi
python="$venv_dir/bin/python"

if ! "$python" -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "Installing torch: $TORCH_COMMAND"
    # shellcheck disable=SC2086
    "$python" -m $TORCH_COMMAND
fi

# Install a requirements file only when it changed since its last successful install (a stamp file for each).
install_requirements() {
    local file="$1" stamp="$venv_dir/$2" wanted
    wanted="$(sha256sum "$file" | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        echo "Installing $file..."
        "$python" -m pip install --disable-pip-version-check -r "$file"
        echo "$wanted" > "$stamp"
    fi
}
install_requirements requirements.txt .requirements.sha256

export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export GRADIO_ANALYTICS_ENABLED=False
if [[ "${1:-}" == "--test" ]]; then
    shift
    install_requirements requirements-test.txt .requirements-test.sha256  # what only the tests need
    exec "$python" -m pytest tests "$@"
fi
exec "$python" app.py "$@"
