#!/usr/bin/env bash
# Run on the GPU machine, from the repository root, with the wheels of prepare_wheels.sh carried:
#   run(command="bash benchmarks/gpu_machine/run_bench_gpu.sh", carry=[".device-wheels"], timeout_s=600)
# One prepared call: installs this package over the image's PyTorch, then runs benchmarks/bench_gpu.py sized
# to end within BENCH_GPU_SECONDS (default 480 s: a session has 15 minutes of device time, the machine's
# start included). Everything it prints, and the JSON, lands in $OUT (the tool brings that folder back).
set -euo pipefail
out=${OUT:-/tmp/bench-gpu-out}
mkdir -p "$out"
if [ ! -d .device-wheels ]; then
  echo "run_bench_gpu.sh: no .device-wheels/ here; run benchmarks/gpu_machine/prepare_wheels.sh first and carry it" >&2
  exit 2
fi
{  # what ran it, for the table in benchmarks/README.md (each line best effort)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  echo "cpus: $(nproc)"
  python3 --version || true
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' || true
} > "$out/machine.txt" 2>&1
if ! python3 -m pip install --no-index --find-links .device-wheels --no-build-isolation -e . > "$out/install.log" 2>&1; then
  tail -40 "$out/install.log" >&2
  exit 1
fi
budget=${BENCH_GPU_SECONDS:-480}
# 1 node at depth 1 and at the derived depth, then 2 and 4 nodes on the one GPU (the nodes-per-GPU
# recommendation); 32 requests per level keep all five servers inside the budget, with a cap per server.
status=0
timeout --signal=INT --kill-after=20 "$budget" python3 benchmarks/bench_gpu.py --nodes 2,4 --requests 32 \
  --max-seconds 75 --results-dir "$out" ${BENCH_GPU_ARGS:-} 2>&1 | tee "$out/bench_gpu.log" || status=$?
cat "$out/machine.txt"
exit "$status"
