"""charrnn export: the model as ONNX."""
import os

import click

from charrnn.cli.common import CONTEXT, load_checkpoint, resolve_checkpoint


@click.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True,
              help="File to write.")
def export(checkpoint, fmt, output):
    """Export a model to run elsewhere: ONNX, one step per call (see README).

    Needs the onnx extra: pip install "charrnn[onnx]".

    \b
    Examples:
      charrnn export checkpoints/shakespeare-lstm-20261123-101500 -o model.onnx
      charrnn export model.npz --format onnx -o model.onnx
    """
    from charrnn.api import Model
    Model(load_checkpoint(resolve_checkpoint(checkpoint))).export(output, fmt)   # errors: DataError
    click.echo(f"wrote {output} ({os.path.getsize(output):,} bytes)", err=True)
