# Settings of the exploration loop, shared by scripts/loop.sh and examples/slurm/submit_iteration.sh
# (sourced, not run). Defaults below (paper values noted), then --config FILE.env (bash KEY=VALUE
# lines), then KEY=VALUE arguments; also --out DIR, --iterations N, --iteration K.
OUT=loop-out
ITERATIONS=2
SYSTEM=Li-P-S
REFS=""                      # reference phases (default: the 16 shipped Li-P-S phases)
GENERATOR=random             # random | motifs | mattergen
N_GENERATE=24                # candidates per iteration (paper: MatterGen, 3,328 per E_hull target 0.00/0.03/0.06)
GENERATE_OPTS="--charge-balance --max-atoms 16"
MODEL=7net-0                 # force field of iteration 0 (later iterations: the previous fine-tune)
RELAX_OPTS="--fmax 0.1 --steps 150"
REFS_RELAX_OPTS="--fmax 0.05 --steps 300"
REEVAL_STEPS=0               # re-evaluating references + earlier candidates with a new model: 0 = single point
E_HULL_MAX=0.1               # S.U.N. stability bound (eV/atom, paper)
DFT_BINS="-inf:0:100,0:0.03:200,0.03:0.1:300"   # paper: <=100 / 200 / 300 frames per E_hull bin (<= 600 to DFT)
N_PERTURB=3                  # perturbed copies per selected frame (paper: 3 before DFT relaxation)
LABELLER=gpaw                # gpaw (PBE, offline) | vasp (dft-select --write-vasp + collect) | model (stand-in, not DFT)
LABEL_MODEL=7net-l3i5        # force field of LABELLER=model (an oracle stand-in, marked mlff-oracle:...)
GPAW_OPTS="--ecut 500 --kpt-density 4"
LABEL_SHARDS=1               # labelling processes run side by side (--shard i/n), e.g. one per core
LABEL_REFS=0                 # 1: label the reference phases too, for E_hull DFT vs force field (hull_dft.extxyz)
N_TRAIN=""                   # frames entropy-select adds to the training set per iteration ("" = all labelled)
FT_BACKEND=sevennet          # fine-tune backend: sevennet (--init FT_INIT) | deepmd
FT_INIT=7net-0
FT_OPTS="--epochs 20"
SEED=0
QUIET=""                     # -q to silence the commands' progress
RELAX_TASKS=8                # SLURM chain: tasks of the relax array
LABEL_TASKS=16               # SLURM chain: tasks of the label array
MD_TASKS=4                   # SLURM chain: tasks of the md-screen array (stage md_screen, optional)
MD_OPTS=""                   # SLURM chain: md-screen options (default: the paper's filters and 10 + 60 ps at 700 K)
K=0                          # SLURM chain: the iteration to submit

loop_settings() {  # parse the command line of loop.sh / submit_iteration.sh
    while (($#)); do
        case $1 in
            --config) source "$2"; shift 2 ;;
            --out) OUT=$2; shift 2 ;;
            --iterations) ITERATIONS=$2; shift 2 ;;
            --iteration) K=$2; shift 2 ;;
            *=*) declare -g "${1%%=*}=${1#*=}"; shift ;;
            *) echo "$(basename "$0"): unknown argument $1 (use --config FILE, --out DIR, --iterations N, KEY=VALUE)" >&2; exit 2 ;;
        esac
    done
    [[ -n $REFS ]] || REFS=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/cscli/data/lips_reference_phases.extxyz
    case $LABELLER in
        gpaw) LABEL_ARGS="-c gpaw $GPAW_OPTS" ;;
        model) LABEL_ARGS="-c model --model $LABEL_MODEL" ;;
        vasp) LABEL_ARGS="" ;;
        *) echo "$(basename "$0"): LABELLER must be gpaw, vasp or model" >&2; exit 2 ;;
    esac
}
