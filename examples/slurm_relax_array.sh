#!/bin/bash
# Relax a large candidate set as a SLURM array: each task takes the frames whose id hashes to its
# shard, writes its own output, and resumes if requeued. Merge with `cat relaxed.*.extxyz`.
#
#   sbatch examples/slurm_relax_array.sh candidates.extxyz [more cscli relax options, e.g. --fmax 0.02 --steps 500]
#SBATCH --job-name=cscli-relax
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
#SBATCH --requeue
set -euo pipefail
input=${1:?usage: sbatch slurm_relax_array.sh CANDIDATES.extxyz [cscli relax options]}
shift
model=${CSCLI_MODEL:-7net-l3i5}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
cscli relax "$input" --shard auto --model "$model" --device auto \
    -o "relaxed.${SLURM_ARRAY_TASK_ID}.extxyz" --failed "failed.${SLURM_ARRAY_TASK_ID}.extxyz" -q "$@"
