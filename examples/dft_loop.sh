#!/bin/bash
# One exploration iteration, DFT part. Run from a login node; the heavy steps are SLURM jobs.
# Needs: cscli installed; VASP + POTCARs on the cluster (PMG_VASP_PSP_DIR or VASP_PP_PATH);
# Debian gpaw + gpaw-data for the GPAW labels.
set -euo pipefail
IT=${IT:-1}

# 1. stability, uniqueness, novelty of the MLFF-relaxed candidates (writes info['e_hull'])
cscli hull relaxed.$IT.extxyz | cscli sun-filter -o sun.$IT.extxyz

# 2. DFT selection by E_hull bins (paper quotas 100/200/300) and VASP relaxation inputs
cscli dft-select sun.$IT.extxyz --seed $IT -o dft.$IT.extxyz \
    --write-vasp vasp.$IT --slurm-time 12:00:00 --slurm-ntasks 64 --slurm-max-parallel 50 \
    --sbatch=--partition=cpu

# 3. VASP relaxations as one array job, then collect 1-5 steps per trajectory when it is done
JOB=$(VASP_CMD="srun vasp_std" sbatch --parsable vasp.$IT/run_vasp_array.sbatch)
sbatch --dependency=afterany:$JOB --wrap \
    "cscli collect vasp.$IT --per-run 1-5 --seed $IT -o vasp_labelled.$IT.extxyz --report collect.$IT.json"

# 4. (after collect) perturbed copies labelled with GPAW in a 16-task array
#    cscli perturb vasp_labelled.$IT.extxyz -n 3 --seed $IT -o perturbed.$IT.extxyz
#    INPUT=perturbed.$IT.extxyz sbatch examples/label_gpaw_array.sbatch
