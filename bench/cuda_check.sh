#!/bin/sh
# The checks of the CUDA path on a GPU machine (never in CI): the CUDA tests, and epoch times
# of the real train stage on synthetic shards of the default corpus's size, for the default
# (small) and the paper-size model, float32 and bf16 autocast. Run from the repository root
# with the project importable (here: installed without dependencies into a prepared image).
# Writes the bench outputs to $OUT when set, else to the working folder.
set -u
out=${OUT:-.}
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/pip.log" 2>&1 \
    || { tail -5 "$out/pip.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider 2>&1 | tail -3
for args in "--size small" "--size paper" "--size paper --amp" "--size paper --batch 40"; do
    echo "== train_epoch $args"
    # shellcheck disable=SC2086
    python3 bench/train_epoch.py --device cuda --epochs 2 $args 2>"$out/err.log" | tail -1 \
        | tee -a "$out/train_epoch.jsonl"
done
