"""An atom-centred equivariant charge-density model (EAC-Net / DeepDFT / ChargE3Net family).

Design (cscli's own, small and CPU-friendly):

1. **Atom features.** Each atom starts from a learned embedding of its element (scalars only) and
   goes through ``layers`` equivariant interaction blocks (e3nn): a message from neighbour j to atom
   i within ``cutoff`` is the tensor product of j's features with the spherical harmonics
   Y(r̂_ij) (l ≤ ``lmax``), weighted per path by an MLP of a Bessel radial basis of |r_ij| that
   vanishes at the cutoff; messages are summed, mixed with a self-connection and passed through a
   gated nonlinearity. Features are ``mul0×0e + mul1×1o + mul2×2e`` (even/odd parity kept).
2. **Radial prior.** Each atom also contributes a spherical term Σ_n c_{Z,n} g_n(r) (Gaussians
   g_n spread over the probe cutoff, a cosine envelope); ``cscli density train`` fits c by least
   squares before the first step, so training starts from the best superposition of spherical
   atoms and the equivariant part learns the bonding (non-spherical) remainder.
3. **Probe points.** The density at a point p is a sum of atomic contributions over atoms i within
   ``probe_cutoff``: c(p,i) = MLP(TP(h_i, Y(r̂_pi); w(|r_pi|)) → scalars) — the probe–atom edge
   contracts the atom's equivariant features with the edge's spherical harmonics to invariants,
   so ρ(p) = Σ_i c(p,i) is invariant under rotations, translations and atom permutations, and
   periodic images are included through the neighbour search (:func:`periodic_pairs`).

ρ is in electrons/Å³. The saved model is a ``torch.save`` dict with ``kind =
"cscli-density-model"``, its hyper-parameters, element list, weights and provenance.
"""

from __future__ import annotations

import math

import numpy as np

from cscli.core.errors import DataError, ModelError

KIND = "cscli-density-model"
_FAST_LAYOUT_ERROR = "density fast path: unexpected e3nn layer layout (use exact=True)"
FORMAT_VERSION = 1

# e3nn's Y_lm(−u) = _SH_CONST[lm] × _monomials(u)[lm] for l ≤ 2 (component normalisation)
_SH_CONST = [
    1.0,
    -math.sqrt(3.0),
    -math.sqrt(3.0),
    -math.sqrt(3.0),
    math.sqrt(15.0),
    math.sqrt(15.0),
    math.sqrt(5.0),
    math.sqrt(15.0),
    0.5 * math.sqrt(15.0),
]

DEFAULT_CONFIG = {
    "cutoff": 4.0,  # Å, atom–atom messages
    "probe_cutoff": 4.0,  # Å, probe–atom contributions
    "lmax": 2,
    "mul0": 24,
    "mul1": 8,
    "mul2": 4,
    "num_basis": 8,
    "radial_hidden": 32,
    "layers": 2,
    "readout_hidden": 16,
    "probe_irreps": "8x0e + 4x1o + 2x2e",  # atom features projected to this before the probe edges
    "avg_neighbors": 12.0,  # message normalisation (set from the training data)
    "avg_probe_neighbors": 12.0,
    "output_scale": 0.05,  # electrons/Å³ (set to the training data's mean density)
    "prior_basis": 16,  # Gaussians of the per-element radial term (spread over [0, probe_cutoff])
    "prior_width": 0.3,  # Å
}


# ----------------------------------------------------------------------------- neighbours


def periodic_pairs(cell, pbc, centers, positions, cutoff: float, exclude_self: bool = False):
    """Pairs (c, a, vec) with |vec| < cutoff, vec = (image of atom a) − center c, over periodic
    images along periodic axes. ``centers`` (C,3), ``positions`` (N,3) Cartesian Å."""
    from scipy.spatial import cKDTree

    cell = np.asarray(cell, dtype=float)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    centers = np.asarray(centers, dtype=float).reshape(-1, 3)
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    if abs(np.linalg.det(cell)) < 1e-9:
        if pbc.any():
            raise DataError("cell has zero volume")
        cell = np.eye(3)
    inv = np.linalg.inv(cell)
    # distance between opposite faces along each axis: V / |a_j × a_k|
    volume = abs(np.linalg.det(cell))
    heights = np.array([volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])
    frac_c = centers @ inv
    frac_a = positions @ inv
    shift_c = np.where(pbc, np.floor(frac_c), 0.0)
    frac_c = frac_c - shift_c  # centres wrapped into the cell (periodic axes)
    frac_a = frac_a - np.where(pbc, np.floor(frac_a), 0.0)
    reach = cutoff / heights
    ranges = [
        np.arange(-int(math.ceil(reach[k])) - 1, int(math.ceil(reach[k])) + 2) if pbc[k] else np.array([0])
        for k in range(3)
    ]
    shifts = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    img_frac = (frac_a[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    owner = np.tile(np.arange(len(positions)), len(shifts))
    lo = np.where(pbc, -reach - 1e-9, -np.inf)
    hi = np.where(pbc, 1 + reach + 1e-9, np.inf)
    keep = np.all((img_frac >= lo) & (img_frac <= hi), axis=1)
    img_frac, owner = img_frac[keep], owner[keep]
    img_cart = img_frac @ cell
    cen_cart = frac_c @ cell
    if len(img_cart) == 0 or len(cen_cart) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3))
    tree_c, tree_a = cKDTree(cen_cart), cKDTree(img_cart)
    pairs = tree_c.query_ball_tree(tree_a, cutoff) if len(cen_cart) < 64 else None
    if pairs is not None:
        ci = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
        ai = np.fromiter((j for p in pairs for j in p), dtype=int, count=len(ci))
    else:
        sdm = tree_c.sparse_distance_matrix(tree_a, cutoff, output_type="ndarray")
        ci, ai = sdm["i"].astype(int), sdm["j"].astype(int)
    vec = img_cart[ai] - cen_cart[ci]
    a = owner[ai]
    if exclude_self:
        ok = np.linalg.norm(vec, axis=1) > 1e-6
        ci, a, vec = ci[ok], a[ok], vec[ok]
    order = np.argsort(ci, kind="stable")  # grouped by centre (callers split by centre ranges)
    return ci[order], a[order], vec[order]


def grid_atom_pairs(cell, pbc, shape, positions, cutoff: float):
    """For each atom in turn, the grid points within ``cutoff`` of it over periodic images:
    yields (atom, flat C-order index of the grid point, vec = atom image − grid point (E,3)).
    Grid point [i,j,k] sits at fractional (i/nx, j/ny, k/nz). No tree: for each (i, j) row of the
    index box around the atom the k range inside the sphere is solved from a quadratic, so only
    the pairs themselves are built. The same pairs as :func:`periodic_pairs` of the grid points
    (up to points exactly on the cutoff sphere, where every contribution vanishes)."""
    cell = np.asarray(cell, dtype=float)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    n0, n1, n2 = (int(n) for n in shape)
    volume = abs(np.linalg.det(cell))
    heights = volume / np.linalg.norm(np.cross(np.roll(cell, -1, axis=0), np.roll(cell, -2, axis=0)), axis=1)
    a2 = cell[2] @ cell[2]
    rc2 = cutoff * cutoff
    for atom, frac in enumerate(np.asarray(positions, dtype=float).reshape(-1, 3) @ np.linalg.inv(cell)):
        ranges = []
        for k, n in enumerate((n0, n1)):
            reach = cutoff / heights[k]
            lo, hi = math.ceil((frac[k] - reach) * n), math.floor((frac[k] + reach) * n)
            if not pbc[k]:
                lo, hi = max(lo, 0), min(hi, n - 1)
            ranges.append(np.arange(lo, hi + 1))
        # row (i, j): atom − point = d_ij + t·a2, t = f2 − k/n2, inside the sphere for t− < t < t+
        d = (
            np.outer(frac[0] - ranges[0] / n0, cell[0])[:, None, :]
            + np.outer(frac[1] - ranges[1] / n1, cell[1])[None, :, :]
        ).reshape(-1, 3)
        base = ((ranges[0] % n0)[:, None] * n1 + (ranges[1] % n1)[None, :]).reshape(-1) * n2
        b = d @ cell[2]
        disc = b * b - a2 * (np.einsum("ex,ex->e", d, d) - rc2)
        ok = disc > 0
        d, b, base, root = d[ok], b[ok], base[ok], np.sqrt(disc[ok])
        k_lo = np.ceil((frac[2] + (b - root) / a2) * n2).astype(np.int64)  # t+ = (−b + root) / a2
        k_hi = np.floor((frac[2] + (b + root) / a2) * n2).astype(np.int64)
        if not pbc[2]:
            k_lo, k_hi = np.maximum(k_lo, 0), np.minimum(k_hi, n2 - 1)
        count = np.maximum(k_hi - k_lo + 1, 0)
        kk = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count - k_lo, count)
        vec = np.repeat(d, count, axis=0) + np.outer(frac[2] - kk / n2, cell[2])
        yield atom, np.repeat(base, count) + kk % n2, vec


# ----------------------------------------------------------------------------- model


def build_model(species, config: dict | None = None):
    """A fresh :class:`DensityNet` for the atomic numbers ``species``."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    return _net_class()(sorted(int(z) for z in species), cfg)


_NET = None


def _net_class():
    global _NET
    if _NET is not None:
        return _NET
    import torch
    from e3nn import o3
    from e3nn.math import soft_one_hot_linspace
    from e3nn.nn import FullyConnectedNet, Gate

    class Interaction(torch.nn.Module):
        def __init__(self, irreps_in, irreps_out, irreps_sh, cfg):
            super().__init__()
            scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
            gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
            gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
            self.gate = Gate(scalars, [torch.nn.functional.silu], gates, [torch.sigmoid], gated)
            mid = self.gate.irreps_in
            self.tp = o3.FullyConnectedTensorProduct(irreps_in, irreps_sh, mid, shared_weights=False)
            self.fc = FullyConnectedNet(
                [cfg["num_basis"], cfg["radial_hidden"], self.tp.weight_numel], torch.nn.functional.silu
            )
            self.self_connection = o3.Linear(irreps_in, mid)
            self.norm = 1.0 / math.sqrt(cfg["avg_neighbors"])
            self.irreps_out = self.gate.irreps_out

        def forward(self, h, edge_src, edge_dst, sh, basis):
            msg = self.tp(h[edge_src], sh, self.fc(basis))
            agg = torch.zeros(h.shape[0], msg.shape[1], dtype=msg.dtype, device=msg.device)
            agg.index_add_(0, edge_dst, msg)
            return self.gate(self.self_connection(h) + agg * self.norm)

    class DensityNet(torch.nn.Module):
        def __init__(self, species, cfg):
            super().__init__()
            self.species = list(species)
            self.config = dict(cfg)
            self.register_buffer("z_to_index", torch.full((119,), -1, dtype=torch.long), persistent=False)
            for i, z in enumerate(self.species):
                self.z_to_index[z] = i
            lmax = int(cfg["lmax"])
            self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
            # built once (o3.spherical_harmonics builds this module on every call); no weights
            self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=False, normalization="component")
            hidden = o3.Irreps(f"{cfg['mul0']}x0e + {cfg['mul1']}x1o + {cfg['mul2']}x2e")
            hidden = o3.Irreps([(m, ir) for m, ir in hidden if ir.l <= lmax and m > 0]).simplify()
            self.embed = torch.nn.Embedding(len(self.species), cfg["mul0"])
            irreps = o3.Irreps(f"{cfg['mul0']}x0e")
            self.layers = torch.nn.ModuleList()
            for _ in range(int(cfg["layers"])):
                layer = Interaction(irreps, hidden, self.irreps_sh, cfg)
                self.layers.append(layer)
                irreps = layer.irreps_out
            self.irreps_atom = irreps
            probe_in = o3.Irreps(cfg["probe_irreps"])
            probe_in = o3.Irreps([(m, ir) for m, ir in probe_in if ir.l <= lmax])
            self.probe_project = o3.Linear(irreps, probe_in)
            n_out = int(cfg["readout_hidden"])
            self.probe_tp = o3.FullyConnectedTensorProduct(
                probe_in, self.irreps_sh, f"{n_out}x0e", shared_weights=False
            )
            self.probe_fc = FullyConnectedNet(
                [cfg["num_basis"], cfg["radial_hidden"], self.probe_tp.weight_numel], torch.nn.functional.silu
            )
            self.readout = FullyConnectedNet([n_out, n_out, 1], torch.nn.functional.silu)
            self.probe_norm = 1.0 / math.sqrt(cfg["avg_probe_neighbors"])
            self.prior_coef = torch.nn.Parameter(torch.zeros(len(self.species), int(cfg["prior_basis"])))
            self.correction = torch.nn.Parameter(torch.tensor(0.1))

        def prior_basis(self, length):
            """Gaussians g_n(r) × cosine envelope, shape (E, prior_basis)."""
            cutoff = float(self.config["probe_cutoff"])
            centres = torch.linspace(
                0.0, cutoff, int(self.config["prior_basis"]), dtype=length.dtype, device=length.device
            )
            g = torch.exp(-(((length[:, None] - centres[None, :]) / float(self.config["prior_width"])) ** 2))
            env = 0.5 * (torch.cos(math.pi * (length / cutoff).clamp(max=1.0)) + 1.0)
            return g * env[:, None]

        def _basis(self, length, cutoff):
            # Bessel sin(nπr/c)/r is finite at r → 0; clamp so a probe on a nucleus gives no 0/0
            return soft_one_hot_linspace(
                length.clamp(min=1e-4), 0.0, cutoff, int(self.config["num_basis"]), basis="bessel", cutoff=True
            ) * math.sqrt(int(self.config["num_basis"]))

        def _sh(self, vec):
            # softened unit vectors r/sqrt(r² + ε²), ε = 1e-3 Å: a probe on a nucleus gets Y_l>0 = 0,
            # Y_0 = 1 (the only rotation-invariant choice) and nearby probes go there continuously
            unit = vec / (vec.pow(2).sum(dim=1, keepdim=True) + 1e-6).sqrt()
            return self.sh(unit)

        def atom_features(self, numbers, edge_src, edge_dst, edge_vec):
            """(equivariant features, element index) of each atom (tensors on the model's device)."""
            idx = self.z_to_index[numbers]
            h = self.embed(idx)
            length = edge_vec.norm(dim=1)
            sh, basis = self._sh(edge_vec), self._basis(length, float(self.config["cutoff"]))
            for layer in self.layers:
                h = layer(h, edge_src, edge_dst, sh, basis)
            return h, idx

        def probe_density(self, features, n_probes, probe_idx, atom_idx, vec):
            """ρ at probe points: Σ over probe–atom edges (vec = atom − probe) of c(p, i)."""
            h, species_idx = features
            length = vec.norm(dim=1)
            # direction from the atom to the probe: the atom's own frame
            sh = self._sh(-vec)
            basis = self._basis(length, float(self.config["probe_cutoff"]))
            s = self.probe_tp(self.probe_project(h)[atom_idx], sh, self.probe_fc(basis))
            contrib = (
                self.readout(s).squeeze(-1) * (self.probe_norm * float(self.config["output_scale"])) * self.correction
            )
            prior = (self.prior_basis(length) * self.prior_coef[species_idx[atom_idx]]).sum(dim=1)
            contrib = contrib + prior
            rho = torch.zeros(n_probes, dtype=contrib.dtype, device=contrib.device)
            rho.index_add_(0, probe_idx, contrib)
            return rho

        # ------------------------------------------------------------- fast inference path
        #
        # For prediction (no gradients). The probe edge's scalars are
        #   s_o = Σ_u c_l(u) (Σ_m x_um Y_lm(r̂)) w_uo(|r|),   w(|r|) = hid(|r|) @ W (the radial MLP's
        #   last layer is linear, no bias),
        # so per atom i they fold into one matrix A_i[k, (l m), o] = Σ_u c_l x_i,um W_k,uo and
        #   s_o = Σ_{k, lm} hid_k(|r|) Y_lm(r̂) A_i[k, lm, o]
        # (32 × 9 × 16 multiply-adds per edge instead of the 32 × 224 radial weights, their product
        # with the 14 invariants and the sum). Every other linear step folds into A or into the
        # weights too: the readout's first layer (linear before its activation), the constant
        # factors of e3nn's Bessel basis, of its normalised activations and of the l ≤ 2 spherical
        # harmonics (evaluated here as the plain monomials 1, x, y, z, xz, … of the softened unit
        # vector, the sign of l = 1 folded for Y(−r)). The radial prior depends on |r| only and
        # is tabulated on 4096 intervals of |r| (linear interpolation). ``Predictor.predict`` and
        # ``Predictor.predict_grid`` use this path; it matches :meth:`probe_density` to ~1e-6 of
        # the largest density (tests/test_density.py). Training uses the exact network.

        def probe_tables(self, n: int = 4096):
            """(dr, prior (species, n+1)): the radial prior of each element on |r| = 0, dr, …, probe_cutoff."""
            cutoff = float(self.config["probe_cutoff"])
            dtype = self.prior_coef.dtype
            r = torch.linspace(0.0, cutoff, n + 1, dtype=dtype, device=self.prior_coef.device)
            prior = self.prior_basis(r) @ self.prior_coef.T  # (n+1, species)
            return cutoff / n, prior.T.contiguous()

        def _probe_paths(self):
            """Per tensor-product path: (slice of the projected features, mul, l, path weight × CG,
            slice of the radial weights)."""
            if getattr(self, "_paths", None) is None:
                paths = []
                slices = self.probe_tp.irreps_in1.slices()
                offset = 0
                for ins in self.probe_tp.instructions:
                    mul, ir = self.probe_tp.irreps_in1[ins.i_in1]
                    deg = ir.l
                    # e3nn's coupling of (l, l) to 0e: δ_mm' / sqrt(2l + 1) in its real basis
                    cg = o3.wigner_3j(deg, deg, 0)[:, :, 0]
                    if not (
                        torch.allclose(cg, torch.eye(2 * deg + 1) * cg[0, 0])
                        and self.probe_tp.irreps_in2[ins.i_in2].ir.l == deg
                        and ins.path_shape[1] == 1
                    ):
                        raise ModelError(_FAST_LAYOUT_ERROR)
                    size = int(np.prod(ins.path_shape))
                    paths.append(
                        (
                            slices[ins.i_in1],
                            mul,
                            deg,
                            float(ins.path_weight) * float(cg[0, 0]),
                            slice(offset, offset + size),
                        )
                    )
                    offset += size
                self._paths = paths
            return self._paths

        def probe_fast_setup(self, features):
            """Per-structure constants of the fast path (a dict): the per-atom matrices ``A`` (N, K,
            n_sh · n_out), the folded first radial layer, readout and prior table."""
            h, species_idx = features
            x = self.probe_project(h)
            dtype, device = x.dtype, x.device
            radial, readout = list(self.probe_fc), list(self.readout)
            if len(radial) != 2 or len(readout) != 2:  # the folding below assumes one hidden layer each
                raise ModelError(_FAST_LAYOUT_ERROR)
            w1, act1, post1 = _split_layer(radial[0])
            k = w1.shape[1]
            weight = radial[1](torch.eye(k, dtype=dtype, device=device)) * post1  # (K, Σ mul × n_out)
            n_out = int(self.config["readout_hidden"])
            lmax = int(self.config["lmax"])
            n_sh = (lmax + 1) ** 2
            a = torch.zeros(len(x), k, n_sh, n_out, dtype=dtype, device=device)
            for sl, mul, deg, c, wsl in self._probe_paths():
                xl = x[:, sl].reshape(-1, mul, 2 * deg + 1)
                wl = weight[:, wsl].reshape(k, mul, n_out)
                a[:, :, deg * deg : (deg + 1) * (deg + 1), :] += c * torch.einsum("num,kuo->nkmo", xl, wl)
            if lmax <= 2:  # Y_lm(−r) = const_lm × monomial_lm(r̂), see _monomials
                a = a * torch.tensor(_SH_CONST[:n_sh], dtype=dtype, device=device)[None, None, :, None]
            r1, act2, post2 = _split_layer(readout[0])
            a = a @ r1  # the readout's first (linear) map, (N, K, n_sh, n_out)
            scale = self.probe_norm * float(self.config["output_scale"]) * self.correction
            w_out = readout[1](torch.eye(n_out, dtype=dtype, device=device))[:, 0] * post2 * scale
            cutoff = float(self.config["probe_cutoff"])
            nb = int(self.config["num_basis"])
            # e3nn's Bessel basis: sqrt(2/c) sin(nπr/c)/r, times sqrt(num_basis) (DensityNet._basis)
            w1 = w1 * (math.sqrt(2.0 / cutoff) * math.sqrt(nb))
            return {
                "A": a.reshape(len(x), k, n_sh * n_out).contiguous(),
                "n_sh": n_sh,
                "species": species_idx,
                "prior": self.probe_tables(),
                "roots": torch.arange(1, nb + 1, dtype=dtype, device=device) * (math.pi / cutoff),
                "w1": w1,
                "act1": act1,
                "act2": act2,
                "w_out": w_out,
                "lmax": lmax,
            }

        def probe_contrib_fast(self, setup, atom: int, vec):
            """Contributions c(p, i) of one atom ``atom`` to probes at ``vec`` = atom − probe (E, 3)."""
            r2 = (vec * vec).sum(dim=1)
            length = r2.sqrt()
            if setup["lmax"] <= 2:
                f = _monomials(vec * (r2 + 1e-6).rsqrt().unsqueeze(1), setup["lmax"])
            else:
                f = self._sh(-vec)
            r = length.clamp(min=1e-4)
            hid = setup["act1"]((torch.sin(r.unsqueeze(1) * setup["roots"]) * (1.0 / r).unsqueeze(1)) @ setup["w1"])
            g = (hid @ setup["A"][atom]).view(len(vec), setup["n_sh"], -1)
            s = (g * f.unsqueeze(2)).sum(dim=1)
            contrib = setup["act2"](s) @ setup["w_out"]
            dr, prior_table = setup["prior"]
            t = length / dr
            i0 = t.floor().long().clamp(max=prior_table.shape[1] - 2)
            row = prior_table[setup["species"][atom]]
            return contrib + torch.lerp(row[i0], row[i0 + 1], t - i0)

    def _split_layer(layer):
        """An e3nn FullyConnectedNet layer with an activation as (W, f, c): layer(x) = f(x @ W)·c,
        f the bare activation (e3nn scales it to unit second moment, folded into c)."""
        w = layer.weight / (layer.h_in * layer.var_in) ** 0.5
        act = layer.act
        c = layer.var_out**0.5
        if not getattr(act, "_is_id", True):
            c = c * act.cst
        f = getattr(act, "f", act)
        probe = torch.linspace(-3.0, 3.0, 7, dtype=w.dtype, device=w.device).unsqueeze(1).expand(7, w.shape[0])
        if not torch.allclose(layer(probe), f(probe @ w) * c, rtol=1e-5, atol=1e-6):
            raise ModelError(_FAST_LAYOUT_ERROR)
        return w, f, c

    def _monomials(u, lmax: int):
        """The components of e3nn's l ≤ 2 spherical harmonics ("component" normalisation) of the
        vector u without their constant factors (_SH_CONST, which also flips l = 1 for Y(−u))."""
        x, y, z = u.unbind(1)
        ones = torch.ones_like(x)
        if lmax == 0:
            return ones.unsqueeze(1)
        if lmax == 1:
            return torch.stack([ones, x, y, z], 1)
        return torch.stack([ones, x, y, z, x * z, x * y, y * y - 0.5 * (x * x + z * z), y * z, z * z - x * x], 1)

    _NET = DensityNet
    return _NET


class Predictor:
    """Runs a model on structures: neighbour lists in numpy, the network in torch."""

    def __init__(self, model, device: str = "cpu"):
        import torch

        self.model = model.to(device)
        self.device = device
        self.torch = torch
        self.dtype = next(model.parameters()).dtype

    def check_species(self, atoms, name: str = "structure"):
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(_symbols(self.model.species)))
        if unknown:
            raise DataError(
                f"{name}: element(s) {', '.join(unknown)} not in the model "
                f"(trained on {', '.join(_symbols(self.model.species))})"
            )

    def atom_graph(self, atoms):
        torch = self.torch
        cfg = self.model.config
        dst, src, vec = periodic_pairs(
            atoms.cell.array, atoms.pbc, atoms.positions, atoms.positions, float(cfg["cutoff"]), exclude_self=True
        )
        # message j → i uses vec = r_j − r_i (dst = centre i, src = neighbour j)
        return (
            torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device),
            torch.as_tensor(src, dtype=torch.long, device=self.device),
            torch.as_tensor(dst, dtype=torch.long, device=self.device),
            torch.as_tensor(vec, dtype=self.dtype, device=self.device),
        )

    def features(self, atoms):
        return self.model.atom_features(*self.atom_graph(atoms))

    def probe_edges(self, atoms, points):
        torch = self.torch
        p, a, vec = periodic_pairs(
            atoms.cell.array, atoms.pbc, points, atoms.positions, float(self.model.config["probe_cutoff"])
        )
        return (
            torch.as_tensor(p, dtype=torch.long, device=self.device),
            torch.as_tensor(a, dtype=torch.long, device=self.device),
            torch.as_tensor(vec, dtype=self.dtype, device=self.device),
        )

    def density(self, atoms, points, h=None):
        """ρ (torch, electrons/Å³) at ``points`` (P,3) Å; gradients flow when enabled."""
        if h is None:
            h = self.features(atoms)
        p, a, vec = self.probe_edges(atoms, points)
        return self.model.probe_density(h, len(points), p, a, vec)

    def predict(
        self, atoms, points, batch: int = 20000, progress=None, exact: bool = False, edge_chunk: int | None = None
    ) -> np.ndarray:
        """ρ at many points, no gradients (numpy): neighbour search per ``batch`` points; unless
        ``exact``, the fast path (:meth:`DensityNet.probe_fast_setup`) per atom over at most
        ``edge_chunk`` edges at a time (default 8192 on a CPU, all on a GPU)."""
        torch = self.torch
        self.check_species(atoms)
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        out = np.empty(len(points))
        self.model.eval()
        with torch.inference_mode():
            h = self.features(atoms)
            if exact:
                for start in range(0, len(points), batch):
                    chunk = points[start : start + batch]
                    out[start : start + len(chunk)] = self.density(atoms, chunk, h).cpu().numpy()
                    if progress is not None:
                        progress(len(chunk))
                return out
            setup = self.model.probe_fast_setup(h)
            rho = torch.zeros(len(points), dtype=self.dtype, device=self.device)
            for start in range(0, len(points), batch):
                chunk = points[start : start + batch]
                p, a, vec = periodic_pairs(
                    atoms.cell.array, atoms.pbc, chunk, atoms.positions, float(self.model.config["probe_cutoff"])
                )
                order = np.argsort(a, kind="stable")  # grouped by atom: one matrix A_i per group
                p, a, vec = p[order] + start, a[order], vec[order]
                bounds = np.searchsorted(a, np.arange(len(atoms) + 1))
                for i in range(len(atoms)):
                    sl = slice(bounds[i], bounds[i + 1])
                    self._accumulate(rho, setup, i, p[sl], vec[sl], edge_chunk)
                if progress is not None:
                    progress(len(chunk))
            out[:] = rho.cpu().numpy()
        return out

    def predict_grid(self, atoms, shape, exact: bool = False, edge_chunk: int | None = None) -> np.ndarray:
        """ρ on the VASP-convention grid ``shape`` of ``atoms`` (flat C order, numpy): the fast path
        atom by atom over the grid points within the probe cutoff (:func:`grid_atom_pairs`, no
        neighbour tree); ``exact`` evaluates the e3nn network on the grid points instead."""
        from cscli.props.density.io import grid_points

        torch = self.torch
        self.check_species(atoms)
        shape = tuple(int(n) for n in shape)
        if exact:
            return self.predict(atoms, grid_points(atoms.cell.array, shape), exact=True)
        rho = torch.zeros(int(np.prod(shape)), dtype=self.dtype, device=self.device)
        self.model.eval()
        with torch.inference_mode():
            setup = self.model.probe_fast_setup(self.features(atoms))
            cutoff = float(self.model.config["probe_cutoff"])
            for i, flat, vec in grid_atom_pairs(atoms.cell.array, atoms.pbc, shape, atoms.positions, cutoff):
                self._accumulate(rho, setup, i, flat, vec, edge_chunk)
        return rho.cpu().numpy().astype(float)

    def _accumulate(self, rho, setup, atom: int, probes, vec, edge_chunk: int | None = None) -> None:
        """rho[probes] += contributions of ``atom`` at displacements ``vec`` (numpy, atom − probe)."""
        torch = self.torch
        if edge_chunk is None:
            edge_chunk = 8192 if str(self.device) == "cpu" else max(len(probes), 1)
        step = max(int(edge_chunk), 1)
        for e0 in range(0, len(probes), step):
            v = torch.as_tensor(vec[e0 : e0 + step], dtype=self.dtype, device=self.device)
            idx = torch.as_tensor(probes[e0 : e0 + step], dtype=torch.long, device=self.device)
            rho.index_add_(0, idx, self.model.probe_contrib_fast(setup, atom, v))


def _symbols(numbers):
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------- files


def save_model(path, model, meta: dict | None = None, extra: dict | None = None) -> None:
    import os

    import torch

    payload = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "config": model.config,
        "species": model.species,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    payload.update(extra or {})
    tmp = f"{path}.part"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_payload(path) -> dict:
    import os

    import torch

    path = str(path)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such density model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ModelError(f"{path}: not a cscli density model ({first})") from None
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        kind = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise ModelError(
            f"{path}: not a cscli density model (found {kind or 'another kind of file'}; "
            "train one with `cscli density train`)"
        )
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{path}: density model format {payload['format_version']} is newer than this cscli's")
    return payload


def load_model(path):
    """(model, meta) from a file written by :func:`save_model`."""
    payload = load_payload(path)
    model = build_model(payload["species"], payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload.get("meta", {})
