"""Loop stages 1–2 and 5: generate candidates (MatterGen, random, motif-seeded), relax them with a
force field, perturb frames for DFT labelling."""
