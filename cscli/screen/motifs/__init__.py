"""``cscli motifs``: anion motifs of frames (:mod:`.graph`: bond graphs, units, charges, names and
hashes) and the catalogue across runs with cluster export (:mod:`.catalogue`)."""

from cscli.screen.motifs.catalogue import Catalogue, example_record, export_cluster, format_table, safe_name
from cscli.screen.motifs.graph import (
    DEFAULT_CUTOFFS,
    DEFAULT_EXCLUDE,
    Motif,
    MotifSettings,
    Unit,
    analyze,
    bond_graph,
    charge_balance,
    dominant_motif,
    find_units,
    formal_charge,
    motif_names,
    pair_cutoff,
    parse_cutoffs,
    tag_frame,
)

__all__ = [
    "Catalogue",
    "DEFAULT_CUTOFFS",
    "DEFAULT_EXCLUDE",
    "Motif",
    "MotifSettings",
    "Unit",
    "analyze",
    "bond_graph",
    "charge_balance",
    "dominant_motif",
    "example_record",
    "export_cluster",
    "find_units",
    "format_table",
    "formal_charge",
    "motif_names",
    "pair_cutoff",
    "parse_cutoffs",
    "safe_name",
    "tag_frame",
]
