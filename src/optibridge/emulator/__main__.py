"""`python -m optibridge.emulator [--port ...]`: the emulator command without the rest of the CLI.

With a single command, typer runs it directly (no sub-command name needed)."""

import typer

from optibridge.emulator.command import register

app = typer.Typer(add_completion=False)
register(app)


if __name__ == "__main__":
    app()
