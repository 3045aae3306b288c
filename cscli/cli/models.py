"""cscli models: list the force fields cscli can load and where their weights are looked for."""

import click

from cscli.cli.options import config_option


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def command(as_json):
    """List model names, backends, weight locations and whether each is usable here."""
    import json

    from cscli.core.frames import data_stdout
    from cscli.core.models import describe_models

    rows = describe_models()
    out = data_stdout()
    if as_json:
        out.write(json.dumps(rows, indent=1) + "\n")
        return
    for row in rows:
        mark = "*" if row["default"] else " "
        ok = "yes" if row["available"] else "no"
        out.write(f"{mark} {row['name']:14s} {row['backend']:10s} {ok:4s} {row['weights']}\n")
    out.write("(* = default; available = backend installed and weights present)\n")
