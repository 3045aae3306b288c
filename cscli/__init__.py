"""cscli: a command-line toolbox for AI-driven crystal-structure exploration.

Keep this module import-light: `cscli --help` must not pull in torch, pymatgen or ASE.
"""

__version__ = "0.1.0"
