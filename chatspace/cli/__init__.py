"""The `chatspace` command line: parse, build a RunConfig, call one library function.

Nothing heavy is imported here at module level: `chatspace --help` must not load torch, transformers,
sentence_transformers or datasets.
"""

from __future__ import annotations

import sys

import click

from chatspace import __version__
from chatspace.cli import dataset, embed, maps, query, runs
from chatspace.cli.help import describe_commands
from chatspace.errors import ENVIRONMENT_ERRNOS, ChatspaceError, describe_os_error, speaking_cli
from chatspace.redact import redact


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="chatspace")
def cli() -> None:
    """Sample a dataset reproducibly, embed it, and keep the vectors with their provenance.

    Any option can also be set as CHATSPACE_{COMMAND}_{OPTION}, e.g. CHATSPACE_EMBED_HF_MODEL.
    """


for _command in (
    embed.embed_hf,
    embed.embed_dataset,
    dataset.describe_dataset,
    dataset.download_alias,
    runs.verify_cmd,
    runs.runs_cmd,
    runs.sql_cmd,
    maps.reduce_embeddings_cmd,
    maps.visualize_embeddings_cmd,
    query.search_cmd,
    query.index_cmd,
    query.near_duplicates_cmd,
    query.cluster_cmd,
):
    cli.add_command(_command)
describe_commands(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and an exit code, never a traceback."""
    if argv is None:  # the real command line, not a caller in the same process
        sys.excepthook = _redacted_excepthook
    with speaking_cli():  # messages name --flags, not Python keywords
        _run(argv)


def _run(argv: list[str] | None) -> None:
    try:
        # Every option can also come from CHATSPACE_{COMMAND}_{OPTION}, e.g. CHATSPACE_EMBED_HF_MODEL.
        cli.main(args=argv, prog_name="chatspace", standalone_mode=False, auto_envvar_prefix="CHATSPACE")
    except click.exceptions.Abort:
        click.echo("chatspace: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        _name_the_variable(e)
        e.show()
        sys.exit(e.exit_code)
    except ChatspaceError as e:
        click.echo(redact(f"chatspace: error: {e}"), err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("chatspace: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        # The file system said no (full, read-only, a file where a folder belongs): not a bug.
        click.echo(redact(f"chatspace: error: {describe_os_error(e)}"), err=True)
        sys.exit(1)
    sys.exit(0)


def _name_the_variable(e: click.ClickException) -> None:
    """A bad value that came from CHATSPACE_{COMMAND}_{OPTION} says so: the command line shows no flag."""
    ctx, param = getattr(e, "ctx", None), getattr(e, "param", None)
    if ctx is None or param is None or param.name is None:
        return
    if ctx.get_parameter_source(param.name) == click.core.ParameterSource.ENVIRONMENT:
        from chatspace.cli.options import env_var

        e.message = f"{e.message} (from ${env_var(ctx, param.name)})"


def _redacted_excepthook(kind, value, tb) -> None:
    """A bug's traceback is wanted, but never with a credential in it."""
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


if __name__ == "__main__":
    main()
