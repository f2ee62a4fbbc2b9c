"""`guided-audio schema`: print the script format's JSON Schema, where it is installed, or
a first line that points an editor at it."""

from __future__ import annotations

import click

from guided_audio.script import authoring


@click.command("schema")
@click.option("--path", "show", flag_value="path", help="Print where the installed schema is.")
@click.option(
    "--modeline", "show", flag_value="modeline", help="Print a first line that points to it."
)
def schema_command(show: str | None) -> None:
    """Print the JSON Schema (draft 2020-12) of the script format.

    Editors check scripts with it (yaml-language-server: VS Code, Neovim): map a folder
    of scripts to the `--path` file in their settings, or begin a script with the
    `--modeline` line. See docs/writing-scripts.md.

    \b
    Example:
      guided-audio schema --path
      guided-audio schema > script.schema.json
    """
    if show == "path":
        click.echo(str(authoring.schema_path()))
    elif show == "modeline":
        click.echo(authoring.modeline(authoring.schema_path().as_uri()))
    else:
        click.echo(authoring.shipped_schema(), nl=False)
