"""Command-line layer: one thin module per subcommand over a library function in ``cscli``."""
