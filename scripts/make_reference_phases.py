"""Build cscli/data/lips_reference_phases.extxyz from ../shared/data (see cscli/data/README.md).

python scripts/make_reference_phases.py [SHARED_DATA_DIR]
"""

import hashlib
import sys
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from cscli.core.frames import write_frames

shared = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
cif_dir = shared / "structures" / "lips20_frame0_refined"
out = Path(__file__).resolve().parents[1] / "cscli" / "data" / "lips_reference_phases.extxyz"

frames = []
for cif in sorted(cif_dir.glob("*_primitive.cif")):
    phase = cif.name.removesuffix("_primitive.cif")
    structure = Structure.from_file(cif)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.info = {
        "id": f"ref-{phase}",
        "phase": phase,
        "spacegroup": SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol(),
        "source": f"shared/data/structures/lips20_frame0_refined/{cif.name}",
        "source_sha256": hashlib.sha256(cif.read_bytes()).hexdigest()[:16],
    }
    frames.append(atoms)
    print(f"{phase:16s} {structure.composition.reduced_formula:10s} {len(atoms):4d} atoms  {atoms.info['spacegroup']}")
write_frames(frames, str(out))
print(f"wrote {len(frames)} phases to {out}")
