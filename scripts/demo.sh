#!/usr/bin/env bash
# The exploration loop on Li–P–S with offline defaults (no GPU, no internet, no VASP).
# Grows as commands land. Usage: scripts/demo.sh OUTDIR
set -euo pipefail
out=${1:-demo-out}
mkdir -p "$out"
refs=$(python -c "from cscli.datafiles import reference_phases_path as p; print(p())")
model=${CSCLI_DEMO_MODEL:-7net-0}

echo "== 1. relax the 16 Li-P-S reference phases with $model (resumes if re-run)"
cscli relax "$refs" -o "$out/refs_relaxed.extxyz" --model "$model" --fmax 0.05 --steps 300
cscli table "$out/refs_relaxed.extxyz" -k id,reduced_formula,natoms,energy_per_atom,volume_per_atom,relax_converged,relax_steps

echo "== 2. perturb them: 3 copies each (σ = 0.08–0.15·a, strain 3–5 %)"
cscli perturb "$out/refs_relaxed.extxyz" -n 3 --seed 1 -o "$out/perturbed.extxyz"
cscli table "$out/perturbed.extxyz" -k id,parent_id,perturb_sigma,perturb_strain | head -8
echo "outputs in $out/"
