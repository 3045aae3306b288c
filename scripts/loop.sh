#!/usr/bin/env bash
# The exploration loop, N iterations, only cscli commands: iter_000/, iter_001/, ... under OUT.
#
#   scripts/loop.sh [--config FILE.env] [--out DIR] [--iterations N] [KEY=VALUE ...]
#
# Settings (scripts/loop_settings.sh lists them with their defaults and the paper's values): the
# defaults, then FILE.env (bash KEY=VALUE lines), then KEY=VALUE arguments.
# Every step resumes: a finished step leaves OUT/iter_k/.done/STEP and is skipped on a re-run; a
# step killed half-way is re-run, and the per-frame commands (generate, relax, perturb, label,
# motifs) skip the ids already in their output. Iteration k+1 relaxes with the model fine-tuned
# in iteration k; the hull and novelty of iteration k use the reference phases plus every earlier
# iteration's relaxed candidates, re-evaluated with iteration k's model (one energy scale).
# The files each iteration writes are the ones `cscli report` reads (docs/report.md).
set -euo pipefail

source "$(dirname "$0")/loop_settings.sh"   # the settings, their defaults (paper values noted) and loop_settings
say() { printf '\n== %s\n' "$*" >&2; }
loop_settings "$@"
mkdir -p "$OUT"
[[ -f $REFS ]] || { echo "loop.sh: REFS=$REFS: no such file (reference phases)" >&2; exit 2; }
[[ $LABELLER != model ]] || say "LABELLER=model: $LABEL_MODEL stands in for DFT (labels marked mlff-oracle:$LABEL_MODEL)"

# step NAME CMD...: run CMD unless iteration $it already finished NAME; mark NAME done after it
step() {
    local name=$1; shift
    if [[ -e $it/.done/$name ]]; then echo "   $it: $name done, skipped" >&2; return 0; fi
    say "$it: $name"
    local t0=$SECONDS
    "$@"
    mkdir -p "$it/.done" && touch "$it/.done/$name"
    echo "   $it: $name took $((SECONDS - t0)) s" >&2
}
# label OUTPUT INPUT...: the labeller, in LABEL_SHARDS processes side by side (merged at the end)
label() {
    local output=$1; shift
    if [[ $LABELLER == vasp ]]; then label_vasp "$output"; return; fi
    if ((LABEL_SHARDS <= 1)); then cscli label "$@" $LABEL_ARGS -o "$output" --failed "$output.failed" $QUIET; return; fi
    local pids=() i
    for ((i = 0; i < LABEL_SHARDS; i++)); do
        cscli label "$@" $LABEL_ARGS --shard "$i/$LABEL_SHARDS" -o "$output.$i" --failed "$output.failed.$i" -q & pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    cat "$output".[0-9]* > "$output.tmp" && mv "$output.tmp" "$output"
}
# VASP: dft-select wrote $it/vasp/ (one relaxation per selected frame); collect once they ran
label_vasp() {
    if ! ls "$it"/vasp/*/vasprun.xml >/dev/null 2>&1; then
        echo "loop.sh: submit the VASP runs (sbatch $it/vasp/run_vasp_array.sbatch), then run loop.sh again" >&2; exit 3
    fi
    cscli collect "$it/vasp" --per-run 1-5 --seed "$SEED" -o "$1" --report "$it/collect.json"
}
finetune() { rm -rf "$it/finetune"; cscli finetune "$@" --seed "$SEED" -o "$it/finetune" -q; }  # a killed run starts over
concat() { local out=$1; shift; cat /dev/null "$@" > "$out"; }   # frames of several files in one (extxyz)

for ((k = 0; k < ITERATIONS; k++)); do
    it=$(printf '%s/iter_%03d' "$OUT" "$k")
    mkdir -p "$it/.done"
    if ((k == 0)); then model=$MODEL; else model=$(printf '%s/iter_%03d/finetune/model.pth' "$OUT" $((k - 1))); fi
    earlier=()      # relaxed candidates of the earlier iterations
    train_prev=()   # their training frames
    dft_prev=()     # their labelled frames (references of the DFT hull)
    for ((j = 0; j < k; j++)); do
        prev=$(printf '%s/iter_%03d' "$OUT" "$j")
        earlier+=("$prev/relaxed.extxyz"); train_prev+=("$prev/train.extxyz"); dft_prev+=("$prev/labelled.extxyz")
    done
    say "iteration $k in $it, force field $model"
    if ((k == 0)); then
        step refs_relax    cscli relax "$REFS" -o "$OUT/refs_relaxed.extxyz" --model "$model" $REFS_RELAX_OPTS --failed "$OUT/refs_failed.extxyz" $QUIET
    fi
    step generate          cscli generate --backend "$GENERATOR" -s "$SYSTEM" -n "$N_GENERATE" --seed $((SEED + k)) --iteration "$k" $GENERATE_OPTS -o "$it/generated.extxyz" $QUIET
    step relax             cscli relax "$it/generated.extxyz" --model "$model" $RELAX_OPTS -o "$it/relaxed.extxyz" --failed "$it/relax_failed.extxyz" $QUIET
    step refs              cscli relax "$OUT/refs_relaxed.extxyz" "${earlier[@]}" --model "$model" --steps "$REEVAL_STEPS" -o "$it/refs.extxyz" --failed "$it/refs_failed.extxyz" $QUIET
    step hull              cscli hull "$it/relaxed.extxyz" --refs "$it/refs.extxyz" -o "$it/hull.extxyz" --failed "$it/hull_failed.extxyz" $QUIET
    step sun               cscli sun-filter "$it/hull.extxyz" --refs "$it/refs.extxyz" --e-hull-max "$E_HULL_MAX" --report "$it/sun.json" -o "$it/sun.extxyz" --failed "$it/sun_failed.extxyz" $QUIET
    step select            cscli dft-select "$it/sun.extxyz" --bins="$DFT_BINS" --seed "$SEED" -o "$it/selected.extxyz" $([[ $LABELLER == vasp ]] && echo --write-vasp "$it/vasp") $QUIET
    step perturb           cscli perturb "$it/selected.extxyz" -n "$N_PERTURB" --seed "$SEED" -o "$it/perturbed.extxyz" $QUIET
    step label             label "$it/labelled.extxyz" "$it/selected.extxyz" "$it/perturbed.extxyz"
    if ((LABEL_REFS)); then
        ((k > 0)) || step refs_label label "$OUT/refs_dft.extxyz" "$OUT/refs_relaxed.extxyz"
        step hull_dft      cscli hull "$it/labelled.extxyz" --refs "$OUT/refs_dft.extxyz" "${dft_prev[@]/#/--refs=}" -o "$it/hull_dft.extxyz" --no-resume --failed "$it/hull_dft_failed.extxyz" $QUIET
    fi
    step train_prev        concat "$it/train_prev.extxyz" "${train_prev[@]}"
    step entropy_select    cscli entropy-select "$it/labelled.extxyz" --train "$it/train_prev.extxyz" ${N_TRAIN:+-n "$N_TRAIN"} --report "$it/entropy.json" -o "$it/train.extxyz" $QUIET
    step eval_before       cscli evaluate --model "$model" "$it/labelled.extxyz" -o "$it/eval_before.json" --device cpu $QUIET
    step finetune          finetune "$it/train_prev.extxyz" "$it/train.extxyz" --backend "$FT_BACKEND" ${FT_INIT:+--init "$FT_INIT"} $FT_OPTS
    step eval_after        cscli evaluate --model "$it/finetune/model.pth" "$it/labelled.extxyz" -o "$it/eval_after.json" --device cpu $QUIET
    step motifs_catalogue  concat "$it/motifs.jsonl" $( ((k > 0)) && printf '%s/iter_%03d/motifs.jsonl' "$OUT" $((k - 1)))
    step motifs            cscli motifs $( ((k == 0)) && echo "$OUT/refs_relaxed.extxyz") "$it/relaxed.extxyz" --catalogue "$it/motifs.jsonl" -o "$it/motifs.extxyz" $QUIET
done
say "report of ${ITERATIONS} iterations"
cscli report "$OUT"/iter_[0-9][0-9][0-9] -o "$OUT/report" $QUIET
