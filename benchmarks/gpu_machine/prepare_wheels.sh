#!/usr/bin/env bash
# Run on a development machine (the package registry reachable) before a session's GPU check: downloads the
# wheels of this package's runtime dependencies for the GPU machine's Python (3.12 on x86_64 Linux; nothing
# can be fetched there) into .device-wheels/, which git ignores and the device tool carries.
#
# The GPU machine's image already holds PyTorch, NumPy, OpenCV and Pillow (and they are what would not fit
# the 64 MiB the tool carries), so their wheels are dropped; pip on that machine keeps the image's copies as
# long as they meet setup.py's lower bounds. Then, through the device tool:
#   run(command="bash benchmarks/gpu_machine/run_bench_gpu.sh", carry=[".device-wheels"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."
python_version=${DEVICE_PYTHON_VERSION:-3.12}
dest=.device-wheels
rm -rf "$dest"
mkdir -p "$dest"
platforms=()
for tag in manylinux2014_x86_64 manylinux_2_28_x86_64 manylinux_2_34_x86_64 manylinux_2_39_x86_64; do
  platforms+=(--platform "$tag")
done
# setup.py's install_requires, read from the source of truth rather than copied here.
mapfile -t requirements < <(python3 - <<'PY'
import ast, pathlib
tree = ast.parse(pathlib.Path("setup.py").read_text())
for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "install_requires":
        for item in ast.literal_eval(node.value):
            print(item)
PY
)
# At the versions the tests ran with (requirements/test.lock), so the GPU numbers come from the same code paths.
python3 -m pip download --quiet --dest "$dest" --only-binary=:all: --implementation cp \
  --python-version "$python_version" "${platforms[@]}" -c requirements/test.lock "${requirements[@]}"
rm -f "$dest"/torch-* "$dest"/numpy-* "$dest"/opencv_python_headless-* "$dest"/pillow-* "$dest"/nvidia_*
echo "$(find "$dest" -name '*.whl' | wc -l) wheels, $(du -sh "$dest" | cut -f1), in $dest"
