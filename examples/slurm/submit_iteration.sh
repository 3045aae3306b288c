#!/usr/bin/env bash
# One iteration of the exploration loop as a chain of SLURM jobs (the serial version: scripts/loop.sh):
#
#   generate ─▶ relax (array, --shard auto) ─▶ screen ─▶ label (array, --shard auto) ─▶ learn
#       [─▶ md_screen (array, --shard auto): Li conductivity of the S.U.N. candidates, optional]
#
# each stage starts when the one before finished without error (--dependency=afterok). Settings are
# loop.sh's (same names), from an env file and/or the environment; they reach the jobs through
# sbatch's default --export=ALL.
#
#   examples/slurm/submit_iteration.sh --config my.env --out loop-out --iteration 0 [KEY=VALUE ...]
#
# Iteration k > 0 relaxes with OUT/iter_<k-1>/finetune/model.pth and uses the earlier iterations as
# references, like loop.sh. A task that times out is resubmitted with the same --array and resumes
# (relax and label skip the ids already in their output). The array outputs are merged by the next
# stage (cat TASK files > FILE). A failed stage cancels the ones after it (--kill-on-invalid-dep).
# CHAIN_STAGES picks stages (default: the five of the loop; add md_screen for the conductivity screen).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/loop_settings.sh"   # the settings and their defaults, shared with loop.sh
REFS_RELAXED=""; CHAIN_STAGES="generate relax screen label learn"; SBATCH_OPTS=""
loop_settings "$@"
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
IT=$(printf '%s/iter_%03d' "$OUT" "$K")
mkdir -p "$IT/slurm"
if ((K == 0)); then MODEL_K=$MODEL; else MODEL_K=$(printf '%s/iter_%03d/finetune/model.pth' "$OUT" $((K - 1))); fi
[[ -n $REFS_RELAXED ]] || REFS_RELAXED=$OUT/refs_relaxed.extxyz   # loop.sh's iteration 0 writes it
EARLIER=""; TRAIN_PREV=""
for ((j = 0; j < K; j++)); do
    EARLIER+=" $(printf '%s/iter_%03d/relaxed.extxyz' "$OUT" "$j")"; TRAIN_PREV+=" $(printf '%s/iter_%03d/train.extxyz' "$OUT" "$j")"
done
[[ $LABELLER != vasp ]] || { echo "submit_iteration.sh: LABELLER gpaw or model (VASP: dft-select --write-vasp + collect, examples/dft_loop.sh)" >&2; exit 2; }
export OUT K IT MODEL_K REFS_RELAXED EARLIER TRAIN_PREV SYSTEM GENERATOR N_GENERATE GENERATE_OPTS RELAX_OPTS \
    REEVAL_STEPS E_HULL_MAX DFT_BINS N_PERTURB LABEL_ARGS N_TRAIN FT_BACKEND FT_INIT FT_OPTS SEED MD_OPTS
dep=""
submit() {  # submit STAGE [sbatch options]: prints the job id, chained after the previous stage
    local stage=$1; shift
    [[ " $CHAIN_STAGES " == *" $stage "* ]] || return 0
    local id
    id=$(sbatch --parsable $SBATCH_OPTS ${dep:+--dependency=afterok:$dep --kill-on-invalid-dep=yes} --output="$IT/slurm/$stage-%A_%a.out" "$@" "$here/$stage.sbatch")
    dep=${id%%;*}
    echo "$stage: job $dep" >&2
}
submit generate
submit relax --array=0-$((RELAX_TASKS - 1))
submit screen
submit label --array=0-$((LABEL_TASKS - 1))
submit learn
submit md_screen --array=0-$((MD_TASKS - 1))
echo "$dep"
