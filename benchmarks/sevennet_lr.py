"""Why `cscli finetune --backend sevennet` defaults to lr 1e-3 and not sevenn's preset 4e-3.

1. First-step probe (default, ~1 CPU min): one Adam step of 7net-0 on 4 NequIP LiPS frames (Huber
   force loss, δ 0.01) at several learning rates; prints the median weight change and how far that
   one step moves the energies and forces of 3 other frames. With no gradient history Adam moves
   every weight by about lr, whatever its gradient.
2. ``--curves`` (~15 CPU min): 7net-0 fine-tuned on 10 frames for 6 epochs with batch/lr
   4/4e-3 (the preset), 4/1e-3 and 1/1e-3; prints the validation curve (10 held-out frames).
   The 10 training frames are those of ``finetune_curve.py --test 50 --sizes 10 --seed 0``.

    OMP_NUM_THREADS=1 python benchmarks/sevennet_lr.py [--curves]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _predict(model, graphs, frames):
    """Energies per atom (eV) and forces (eV/Å) of ``graphs`` in one batch."""
    import sevenn._keys as KEY
    from torch_geometric.loader import DataLoader

    model.eval()
    out = model(next(iter(DataLoader(graphs, batch_size=len(graphs)))))
    natoms = np.array([len(a) for a in frames])
    return out[KEY.PRED_TOTAL_ENERGY].detach().numpy().ravel() / natoms, out[KEY.PRED_FORCE].detach().numpy()


def first_step(frames, lrs=(4e-3, 1e-3, 2.5e-4)):
    import sevenn._keys as KEY
    import torch
    from torch_geometric.loader import DataLoader

    from cscli.learn.finetune.sevennet import frame_graph, load_pretrained, parse_init

    order = np.random.default_rng(0).permutation(len(frames))
    train, held = [frames[i] for i in order[50:54]], [frames[i] for i in order[:3]]
    _, path, _ = parse_init("7net-0")
    for lr in lrs:
        torch.manual_seed(0)
        model, cfg, _ = load_pretrained(path)
        model.set_is_batch_data(True)
        g_tr = [frame_graph(a, cfg["cutoff"]) for a in train]
        g_he = [frame_graph(a, cfg["cutoff"]) for a in held]

        e0, f0 = _predict(model, g_he, held)
        w0 = {k: p.detach().clone() for k, p in model.named_parameters()}
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        out = model(next(iter(DataLoader(g_tr, batch_size=len(g_tr)))))
        loss = torch.nn.functional.huber_loss(out[KEY.PRED_FORCE], out[KEY.FORCE], delta=0.01)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step = np.concatenate([(p.detach() - w0[k]).abs().numpy().ravel() for k, p in model.named_parameters()])
        e1, f1 = _predict(model, g_he, held)
        print(
            f"lr {lr:g}: median |dw| {np.median(step):.2e} ({np.median(step) / lr:.2f} lr); one step moves the "
            f"held-out energies by {1e3 * np.abs(e1 - e0).mean():.1f} meV/atom and forces by "
            f"{1e3 * np.sqrt(((f1 - f0) ** 2).mean()):.0f} meV/Å (RMS)",
            flush=True,
        )


def curves(frames, work: Path):
    from cscli.learn.finetune import backend_options, finetune

    order = np.random.default_rng(0).permutation(len(frames))
    valid = [frames[i] for i in order[:10]]
    pool = [frames[i] for i in order[50:350]]
    train = [pool[i] for i in np.random.default_rng(10).permutation(len(pool))[:10]]
    for bs, lr in [(4, 4e-3), (4, 1e-3), (1, 1e-3)]:
        opts = backend_options("sevennet", init="7net-0", epochs=6, seed=0, start_lr=lr, batch_size=bs, device="cpu")
        s = finetune(train, valid, work / f"bs{bs}-lr{lr:g}", backend="sevennet", plot=False, **opts)
        rows = np.loadtxt(s["lcurve"])
        print(
            f"batch {bs} lr {lr:g}: validation F (meV/Å) per epoch "
            + ", ".join(f"{1e3 * x:.0f}" for x in rows[:, 6])
            + f"; E (meV/atom) {', '.join(f'{1e3 * x:.1f}' for x in rows[:, 4])}; "
            f"{s['cpu_seconds_per_epoch'] / len(train):.2f} CPU s per frame-epoch",
            flush=True,
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--curves", action="store_true", help="also the 6-epoch validation curves (~15 CPU min)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    from benchmarks.finetune_curve import lips_frames
    from cscli.core.log import configure

    configure("sevennet_lr", quiet=True)
    frames = lips_frames()
    first_step(frames)
    if args.curves:
        curves(frames, Path(args.workdir or tempfile.mkdtemp(prefix="sevennet_lr_")))


if __name__ == "__main__":
    main()
