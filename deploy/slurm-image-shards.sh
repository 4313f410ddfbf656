#!/bin/bash
# Slurm array: 32 tasks share the units of one image-shards run on a shared filesystem.
#   sbatch deploy/slurm-image-shards.sh configs/image-shards.yaml /shared/datasets/laion-512
#SBATCH --job-name=bitprep-image-shards
#SBATCH --array=0-31%32
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail
config=${1:?config file}
output=${2:?output directory or s3://bucket/prefix}
cd "${BITPREP_HOME:-$SLURM_SUBMIT_DIR}"
# SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT select this task's units.
exec node bin/bitprep.js run "$config" --output "$output" --progress plain
