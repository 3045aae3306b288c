#!/usr/bin/env bash
# One iteration of the exploration loop on Li–P–S with offline defaults: no GPU, no internet, no
# VASP. The DFT step is stood in by the force field (label -c model, marked mlff-oracle in info);
# swap in `cscli label -c gpaw` (real PBE, slow) or `dft-select --write-vasp` + `collect`.
# Re-running resumes: every stage skips ids already in its output.
#   scripts/demo.sh OUTDIR        (make demo)
set -euo pipefail
out=${1:-demo-out}
mkdir -p "$out"
refs=$(python -c "from cscli.core.datafiles import reference_phases_path as p; print(p())")
model=${CSCLI_DEMO_MODEL:-7net-l3i5}
n_gen=${CSCLI_DEMO_NUM:-24}
say() { printf '\n== %s\n' "$*" >&2; }

say "0. relax the 16 Li-P-S reference phases with $model: the hull's references"
cscli relax "$refs" -o "$out/refs_relaxed.extxyz" --model "$model" --fmax 0.05 --steps 300
cscli table "$out/refs_relaxed.extxyz" -k id,reduced_formula,natoms,energy_per_atom,volume_per_atom,relax_converged,relax_steps

say "1. generate $n_gen random symmetric Li-P-S crystals (pyxtal), 2. relax them"
cscli generate --backend random -s Li-P-S -n "$n_gen" --seed 0 --charge-balance --max-atoms 16 -o "$out/generated.extxyz"
cscli relax "$out/generated.extxyz" -o "$out/relaxed.extxyz" --model "$model" --fmax 0.1 --steps 150 --failed "$out/relax_failed.extxyz"

say "3. E_hull against the relaxed references, S.U.N. filter"
cscli hull "$out/relaxed.extxyz" --refs "$out/refs_relaxed.extxyz" -o "$out/hull.extxyz" --failed "$out/hull_failed.extxyz"
cscli sun-filter "$out/hull.extxyz" --refs "$out/refs_relaxed.extxyz" --report "$out/sun_summary.json" -o "$out/sun.extxyz"
cscli table "$out/sun.extxyz" -k id,reduced_formula,natoms,energy_per_atom,e_hull,is_stable,is_unique,is_novel,is_sun

say "4. pick frames for DFT by E_hull bins (VASP inputs written too, POTCARs excepted)"
cscli dft-select "$out/sun.extxyz" --bins=-inf:0:10,0:0.1:10,0.1:inf:5 --seed 0 -o "$out/selected.extxyz" --write-vasp "$out/vasp"

say "5. perturb them (σ = 0.08–0.15·a, strain 3–5 %) and label (force field standing in for DFT)"
cscli perturb "$out/selected.extxyz" -n 3 --seed 1 -o "$out/perturbed.extxyz"
cscli label -c model --model "$model" "$out/perturbed.extxyz" -o "$out/labelled.extxyz"

say "6. entropy-select training frames (QUESTS information entropy)"
cscli entropy-select "$out/labelled.extxyz" -n 20 -o "$out/train.extxyz" --report "$out/entropy.json" --plot "$out/entropy.png"

say "7. fine-tune a small DPA-3 on them (deepmd-kit, a short run) and evaluate it"
# from scratch, a short run needs lr 1e-2 (wsd) to get past the zero-force start (docs/finetune.md)
cscli finetune "$out/train.extxyz" --backend deepmd --preset tiny --steps "${CSCLI_DEMO_STEPS:-400}" \
    --lr-schedule wsd --start-lr 1e-2 --stop-lr 1e-4 --seed 0 -o "$out/dpa3" -q
cscli evaluate --model "$out/dpa3/model.pth" "$out/labelled.extxyz" -o "$out/dpa3_eval.json" --plot "$out/dpa3_parity.png" --device cpu

say "downstream: anion motifs of the relaxed candidates and references"
cscli motifs "$out/refs_relaxed.extxyz" "$out/relaxed.extxyz" --catalogue "$out/motifs.jsonl" --export-dir "$out/motif_xyz" -o "$out/motifs.extxyz"
echo "outputs in $out/ (sun_summary.json, entropy.png, dpa3/learning_curve.png, dpa3_parity.png, motifs.jsonl)" >&2
