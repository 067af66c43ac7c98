"""charrnn export: the model as ONNX."""
import os

import click

from charrnn.commands.common import (CONTEXT, DataError, load_checkpoint, resolve_checkpoint)


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
    from charrnn.export import ExportError, export_onnx
    ck = load_checkpoint(resolve_checkpoint(checkpoint))
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise DataError(f"{output}: cannot write here (no such folder, or permission denied)")
    try:
        export_onnx(ck, output)
    except ExportError as e:
        raise DataError(str(e)) from None
    except OSError as e:
        raise DataError(f"{output}: {e.strerror}") from None
    click.echo(f"wrote {output} ({os.path.getsize(output):,} bytes)", err=True)
