#!/usr/bin/env bash
# P-T phase diagrams of the 16 shipped Li-P-S reference phases (the paper's Fig. 5):
# quasi-harmonic G(T, p) of every phase with one force field, then Gibbs hulls at
# 300 K / 1 bar, 600 K / 1 bar and 300 K / 2 GPa, each drawn as a ternary phase diagram.
#
#   bash examples/phase_diagram.sh [OUTDIR]
#
# Settings come from the environment (defaults = the documented defaults of `cscli qha`, except the
# model and the mesh):
#   CSCLI_MODEL  force field (default 7net-0+d3: 7net-0 with DFT-D3(BJ); cscli's default 7net-l3i5 has
#                imaginary modes in bcc Li at 4 of 6 volumes, and without dispersion the molecular S8 and
#                P corners are barely bound: docs/qha.md)
#   JOBS         parallel `cscli qha` processes (--shard i/JOBS; default 1; one per core)
#   SCALES       lattice scale factors (0.95:1.05:0.02)     MIN_LENGTH  supercell lengths, Å (12;
#                below ~10 the 6 Å cells get 1x1x1 supercells and spurious imaginary modes: docs/qha.md)
#   MESH         q-mesh (default supercell: the commensurate q-points, where the frequencies are exact;
#                the interpolated phonopy mesh, e.g. 20 Å, shows imaginary modes no computed q-point has
#                when the model reaches beyond the supercell, as SevenNet's 5 layers do: docs/qha.md),
#                a phonopy length (Å), or N,N,N                 FMAX  relaxation threshold (0.001)
#   PHASES       comma list of phase names to keep, computed in the listed order (default: all 16 in
#                the reference file's order; the elements Li, P, S are always needed and go first
#                unless listed)
#   EXTRA        an extxyz of more phases to include (unique ids), e.g. examples/phase_diagram_extra.extxyz:
#                the P polymorph that 7net-0+d3 finds 177 meV/atom below the shipped P (docs/qha.md)
#   PHASE_SCALES own scale grids for some frames, by phase name or id: "NAMES=GRID;NAMES=GRID" (default
#                "Li,Li3P=0.95:1.15:0.02": cheap cells whose six default volumes leave too few for the
#                fit; bcc Li's EOS fit runs away above 400 K, Li3P has imaginary modes at 0.95 and 0.97
#                with 7net-0+d3). The published run adds ";P-compressed=0.97:1.03:0.01" (docs/qha.md)
# Cost and the published run: docs/qha.md. The run resumes: re-run the same command after a kill
# (per-volume force sets in OUTDIR/qha-work).
set -euo pipefail

OUT=${1:-phase_diagram}
mkdir -p "$OUT"
MODEL=${CSCLI_MODEL:-7net-0+d3}
JOBS=${JOBS:-1}
REFS=$(python -c 'from cscli.core.datafiles import reference_phases_path; print(reference_phases_path())')

# the phases in order (PHASES, then EXTRA); frames named in PHASE_SCALES go to group files of their own
python - "$REFS" "$OUT" "${PHASES:-}" "${EXTRA:-}" "${PHASE_SCALES-Li,Li3P=0.95:1.15:0.02}" <<'PY'
import sys
from pathlib import Path
from cscli.core.frames import read_frames, write_frames
refs, out, phases, extra, phase_scales = sys.argv[1:]
frames = list(read_frames(refs))
by_phase = {a.info["phase"]: a for a in frames}
if phases:
    names = [n for n in phases.split(",") if n]
    unknown = [n for n in names if n not in by_phase]
    if unknown:
        sys.exit(f"PHASES: unknown phase(s) {', '.join(unknown)}; choose from {', '.join(by_phase)}")
    names = [n for n in ("Li", "P", "S") if n not in names] + list(dict.fromkeys(names))
    frames = [by_phase[n] for n in names]
if extra:
    frames += list(read_frames(extra))
for old in Path(out).glob("phases_group*"):
    old.unlink()
rest = frames
for k, group in enumerate(g for g in phase_scales.split(";") if g):
    names, _, grid = group.partition("=")
    if not grid:
        sys.exit(f"PHASE_SCALES: {group!r} is not NAMES=GRID")
    names = set(names.split(","))
    members = [a for a in rest if {a.info.get("phase"), a.info.get("id")} & names]
    rest = [a for a in rest if all(a is not m for m in members)]
    if members:
        write_frames(members, f"{out}/phases_group{k}.extxyz")
        Path(f"{out}/phases_group{k}.scales").write_text(grid)
write_frames(rest, f"{out}/phases.extxyz")
PY

QHA_ARGS=(--model "$MODEL" --min-length "${MIN_LENGTH:-12}" --mesh "${MESH:-supercell}" --fmax "${FMAX:-0.001}"
    --temperatures 0:600:10 --pressures 0,0.5,1,2 --follow-soft-modes
    --work-dir "$OUT/qha-work" --plot-dir "$OUT/qha_plots")
start=$(date +%s)
# saddle points held by a phase's symmetry (monoclinic S8 at some volumes) are followed down along
# their imaginary Gamma modes (--follow-soft-modes); phases unstable elsewhere fail with the reason
for group in "$OUT"/phases_group*.extxyz; do
    [[ -e "$group" ]] || continue
    cscli qha "$group" -o "${group/phases_/refs_qha.}" --scales "$(cat "${group%.extxyz}.scales")" \
        "${QHA_ARGS[@]}" --failed "${group/phases_/qha_failed.}"
done
pids=()
for ((i = 0; i < JOBS; i++)); do
    cscli qha "$OUT/phases.extxyz" -o "$OUT/refs_qha.$i-of-$JOBS.extxyz" --shard "$i/$JOBS" \
        --scales "${SCALES:-0.95:1.05:0.02}" "${QHA_ARGS[@]}" --failed "$OUT/qha_failed.$i-of-$JOBS.extxyz" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done   # set -e: a failed shard stops the script
cat "$OUT"/refs_qha.group*.extxyz "$OUT"/refs_qha.*-of-"$JOBS".extxyz 2>/dev/null > "$OUT/refs_qha.extxyz" || true
echo "qha: $(( $(date +%s) - start )) s" >&2

# 1 bar = 1e-4 GPa (interpolated between the 0 and 0.5 GPa grid points)
for cond in 300,0.0001 600,0.0001 300,2; do
    tag=${cond/,/K_}GPa
    cscli hull "$OUT/refs_qha.extxyz" --refs "$OUT/refs_qha.extxyz" --at "$cond" --no-resume \
        -o "$OUT/hull_${tag}.extxyz" --plot "$OUT/pd_${tag}.png"
    echo "== $cond (K,GPa): phases on the Gibbs hull (e_hull <= 1 meV/atom) and near it"
    cscli table "$OUT/hull_${tag}.extxyz" -k id,e_hull,qha_imaginary
done
