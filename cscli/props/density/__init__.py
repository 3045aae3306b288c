"""Charge-density model (``cscli density``): CHGCAR/h5 input and output, an atom-centred
equivariant model of ρ(r), training, prediction, testing and VASP non-SCF inputs."""
