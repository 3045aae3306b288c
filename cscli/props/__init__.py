"""Downstream properties of explored structures: quasi-harmonic free energies (qha), Li
conductivity by MD (md_screen), charge densities (density)."""
