"""md-screen benchmarks.

(1) overhead: cscli's MD loop (``run_md``: sampling, runaway checks, checkpoints, temperature
    bookkeeping) against a bare ASE loop with the same model object and the same integrators
    (IsotropicMTKNPT then NoseHooverChainNVT, same damping, same velocities), best of --repeats,
    interleaved. Goal: < 5 %.
(2) protocol: the paper's chain (filters passed, supercell ≥ --min-length, NPT then NVT, analysis of
    the last --analysis-ps) on β-Li3PS4 and Li7P3S11 with --model: time per structure and σ_Li(700 K)
    with its block-averaging error, next to the paper's MatterSim-5M figures (1,397.6 and 1,059.9
    mS/cm). Give --npt-ps/--nvt-ps to fit the machine; the printout says what ran.

    python benchmarks/md.py overhead [--model 7net-0|lj-argon] [--steps 100] [--repeats 3]

Wall time on a shared machine is dominated by other load; the overhead line also gives the
process CPU time (time.process_time), which is what cscli adds. ``lj-argon`` (ASE's Lennard-Jones
on 108-atom fcc argon, a few ms a step) exposes the per-step bookkeeping the most.
    python benchmarks/md.py protocol [--model 7net-0] [--npt-ps 1] [--nvt-ps 4] [--analysis-ps 3]
"""

import argparse
import tempfile
import time

import numpy as np

from cscli.core.datafiles import reference_phases_path
from cscli.core.frames import read_frames
from cscli.core.models import load_calculator
from cscli.props.md_screen import MDSettings, ScreenSettings, make_supercell, run_md, screen_frame

PAPER = {"beta-Li3PS4": 1397.6, "Li7P3S11": 1059.9}  # mS/cm, MatterSim-5M, 700 K (SI Table 1)

p = argparse.ArgumentParser()
p.add_argument("what", choices=["overhead", "protocol"])
p.add_argument("--model", default="7net-0")
p.add_argument("--phase", default="beta-Li3PS4")
p.add_argument("--steps", type=int, default=100, help="overhead: NPT steps + NVT steps, each")
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--min-length", type=float, default=10.0)
p.add_argument("--temperature", type=float, default=700.0)
p.add_argument("--npt-ps", type=float, default=10.0)
p.add_argument("--nvt-ps", type=float, default=60.0)
p.add_argument("--analysis-ps", type=float, default=50.0)
p.add_argument("--timestep-fs", type=float, default=2.0)
p.add_argument("--phases", default="beta-Li3PS4,Li7P3S11")
args = p.parse_args()

refs = {a.info["phase"]: a for a in read_frames(str(reference_phases_path()))}
if args.model == "lj-argon":
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=6.0, smooth=True)
    calc.cscli_model = "lj-argon"
    refs[args.phase] = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(3)
    args.temperature, args.timestep_fs = min(args.temperature, 60.0), 5.0
else:
    calc = load_calculator(args.model, "cpu")


def bare_loop(atoms, s: MDSettings, seed: int):
    """The same chain with nothing but ASE: velocities, IsotropicMTKNPT.run, NoseHooverChainNVT.run."""
    from ase import units
    from ase.md.nose_hoover_chain import IsotropicMTKNPT, NoseHooverChainNVT
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    atoms = atoms.copy()
    atoms.calc = calc
    thermalize_momenta(atoms, s.temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dt = s.timestep_fs * units.fs
    IsotropicMTKNPT(
        atoms,
        timestep=dt,
        temperature_K=s.temperature,
        pressure_au=s.pressure_bar * units.bar,
        tdamp=s.tdamp_steps * dt,
        pdamp=s.pdamp_steps * dt,
    ).run(s.npt_steps)
    NoseHooverChainNVT(atoms, timestep=dt, temperature_K=s.temperature, tdamp=s.tdamp_steps * dt).run(s.nvt_steps)
    return atoms


if args.what == "overhead":
    sc, reps = make_supercell(refs[args.phase], args.min_length)
    ps = args.steps * args.timestep_fs / 1000
    s = MDSettings(
        temperature=args.temperature,
        npt_ps=ps,
        nvt_ps=ps,
        timestep_fs=args.timestep_fs,
        sample_fs=10 * args.timestep_fs,
        checkpoint_ps=ps / 2,
    )
    probe = sc.copy()
    probe.calc = calc
    probe.get_forces()  # warm-up outside both timings
    t_bare, t_ours, c_bare, c_ours = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            bare_loop(sc, s, r)
            t_bare.append(time.perf_counter() - t0)
            c_bare.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            run_md(sc, calc, s, seed=r, work_dir=f"{tmp}/{r}")
            t_ours.append(time.perf_counter() - t0)
            c_ours.append(time.process_time() - c0)
    steps = s.npt_steps + s.nvt_steps
    b, o = min(t_bare), min(t_ours)
    cb, co = min(c_bare), min(c_ours)
    print(
        f"{args.phase} {'x'.join(map(str, reps))} supercell, {len(sc)} atoms, model {calc.cscli_model}, "
        f"{steps} steps ({s.npt_steps} NPT + {s.nvt_steps} NVT), sample every {s.sample_every}, "
        f"checkpoint every {s.checkpoint_ps} ps, best of {args.repeats}"
    )
    print(f"bare ASE loop   wall {b:8.2f} s  {steps / b:7.2f} steps/s   CPU {cb:8.2f} s")
    print(f"cscli run_md    wall {o:8.2f} s  {steps / o:7.2f} steps/s   CPU {co:8.2f} s")
    print(
        f"overhead        wall {100 * (o / b - 1):+.1f} %   CPU {100 * (co / cb - 1):+.1f} %   (wall bare: "
        f"{', '.join(f'{t:.2f}' for t in t_bare)}; wall cscli: {', '.join(f'{t:.2f}' for t in t_ours)})"
    )
else:
    settings = ScreenSettings(
        md=MDSettings(
            temperature=args.temperature, npt_ps=args.npt_ps, nvt_ps=args.nvt_ps, timestep_fs=args.timestep_fs
        ),
        min_length=args.min_length,
        analysis_ps=args.analysis_ps,
    )
    print(
        f"protocol: supercell >= {args.min_length} Å, NPT {args.npt_ps} ps at 1 bar, NVT {args.nvt_ps} ps at "
        f"{args.temperature} K, {args.timestep_fs} fs steps, analysis of the last {args.analysis_ps} ps; "
        f"model {calc.cscli_model} (the paper: 10 + 60 ps, last 50 ps, MatterSim-5M)"
    )
    for name in args.phases.split(","):
        atoms = refs[name].copy()
        atoms.info["e_hull"] = 0.0  # both are on or near the hull; the filter is not what is measured
        t0 = time.perf_counter()
        out = screen_frame(atoms, calc, settings, seed=0)
        wall = time.perf_counter() - t0
        i = out.info
        print(
            f"{name:12s} {i['md_supercell']:>6s} {i['md_n_atoms']:4d} atoms  {wall / 60:6.1f} min  "
            f"T={i['md_temperature_mean']:.0f} K  V/atom(NPT)={i.get('md_volume_per_atom_npt', float('nan')):.2f} Å³  "
            f"D_Li={i['md_d_Li']:.2e}±{i['md_d_Li_err']:.1e}  D_P={i['md_d_P']:.1e}  D_S={i['md_d_S']:.1e} cm²/s  "
            f"σ_Li={i['md_sigma_li']:.0f}±{i['md_sigma_li_err']:.0f} mS/cm (endpoint {i['md_sigma_li_endpoint']:.0f}; "
            f"paper {PAPER.get(name, float('nan')):.1f})  conductor={i['md_is_conductor']}"
        )
