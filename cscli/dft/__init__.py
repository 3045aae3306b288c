"""Loop stages 4–5: choose frames for DFT (E_hull bins), write VASP inputs, label with GPAW/VASP or
a force-field oracle, collect finished runs."""
