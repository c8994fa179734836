#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript, set by recpipe.spark.gpu_conf
# when train.gpus_per_worker > 0): prints the GPUs this executor sees as Spark's ResourceInformation
# JSON, e.g. {"name": "gpu", "addresses": ["0","1"]}. The addresses are nvidia-smi's indices; the
# Horovod ranks pin to them (recpipe.model.devices, with CUDA_DEVICE_ORDER=PCI_BUS_ID as nvidia-smi).
# No nvidia-smi or no driver: exits non-zero, and the executor fails to start naming this script.
# Installed in the image as /opt/recpipe/gpu/discover-gpus.sh (deploy/docker/Dockerfile).
set -euo pipefail

indices="$(nvidia-smi --query-gpu=index --format=csv,noheader)"
addresses=""
while IFS= read -r index; do
  index="${index//[[:space:]]/}"
  [[ -z "$index" ]] && continue
  if [[ ! "$index" =~ ^[0-9]+$ ]]; then
    echo "discover-gpus.sh: unexpected nvidia-smi output line: $index" >&2
    exit 1
  fi
  addresses+="${addresses:+,}\"${index}\""
done <<<"$indices"
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
