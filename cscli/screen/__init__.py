"""Loop stage 3: convex hulls, S.U.N. filtering (StructureMatcher uniqueness and novelty),
fingerprints and anion motifs."""
