"""cscli table: print chosen info keys of frames as an aligned table or TSV."""

import click

from cscli.cli.options import config_option, input_format_option, inputs_argument


@click.command("table")
@inputs_argument
@click.option(
    "-k", "--keys", default=None, help="Comma-separated keys (default: id,formula,natoms,energy_per_atom,e_hull,...)."
)
@click.option("--tsv", is_flag=True, help="Tab-separated output (for awk, pandas).")
@input_format_option
@config_option
def command(inputs, keys, tsv, input_format):
    """Tabulate frames: info keys plus derived columns formula, reduced_formula, natoms,
    volume_per_atom and fmax. Keys absent from every frame are dropped from the default set."""
    from cscli.cli.options import read_input
    from cscli.core.frames import data_stdout
    from cscli.core.table import DEFAULT_KEYS, frame_value, render, table_rows

    frames = read_input(inputs, input_format)
    if keys:
        key_list = [k.strip() for k in keys.split(",") if k.strip()]
    else:
        key_list = [k for k in DEFAULT_KEYS if any(frame_value(a, k) is not None for a in frames)]
    data_stdout().write(render(table_rows(frames, key_list), key_list, tsv))
