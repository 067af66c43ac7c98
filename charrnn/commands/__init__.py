"""One module per command group, each a @click.command that cli.py adds to the group."""
