"""Command-line conventions: options from CHATSPACE_* environment variables (the command line and
then the environment win over --config), shell completion, and defaults shared by the commands."""

from __future__ import annotations

from tests.helpers import REPO, run_cli

DEMO = str(REPO / "chatspace" / "resources" / "demo.jsonl")


def _selected(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.strip().startswith("selected:"))


def test_options_come_from_chatspace_environment_variables(tmp_path):
    args = ("embed-dataset", "--dataset", DEMO, "--output-root", str(tmp_path))  # a dry run: nothing sent
    env = {"CHATSPACE_EMBED_DATASET_N": "7", "CHATSPACE_EMBED_DATASET_SEED": "3"}
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "selected:   7 rows" in _selected(proc.stdout)
    assert run_cli(*args, "--n", "4", env=env).stdout.count("selected:   4 rows") == 1  # the flag wins

    config = tmp_path / "job.toml"
    config.write_text("n = 9\n")
    proc = run_cli(*args, "--config", str(config), env=env)
    assert proc.returncode == 0 and "selected:   7 rows" in _selected(proc.stdout)  # env over the file
    proc = run_cli(*args, "--config", str(config))
    assert proc.returncode == 0 and "selected:   9 rows" in _selected(proc.stdout)

    proc = run_cli(*args, env={"CHATSPACE_EMBED_DATASET_N": "many"})
    assert proc.returncode == 2 and "'many' is not a valid integer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_and_runs_default_to_chatspace_root(tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    proc = run_cli("verify", env={"CHATSPACE_ROOT": str(empty)})
    assert proc.returncode == 1 and f"no chatspace manifest found under {empty}" in proc.stderr
    proc = run_cli("runs", env={"CHATSPACE_ROOT": str(empty)})
    assert proc.returncode == 0 and f"no chatspace runs under {empty}" in proc.stdout
    proc = run_cli("verify", env={"CHATSPACE_ROOT": str(tmp_path / "missing")})
    assert proc.returncode == 2 and "missing does not exist" in proc.stderr


def test_shell_completion_script_and_completions():
    proc = run_cli(env={"_CHATSPACE_COMPLETE": "bash_source"})
    assert proc.returncode == 0 and "_chatspace_completion()" in proc.stdout
    proc = run_cli(
        env={"_CHATSPACE_COMPLETE": "bash_complete", "COMP_WORDS": "chatspace emb", "COMP_CWORD": "1"}
    )
    assert proc.returncode == 0
    assert "plain,embed-hf" in proc.stdout and "plain,embed-dataset" in proc.stdout


def test_help_gives_every_option_a_line_and_every_command_examples():
    import click

    from chatspace.cli import cli

    for name, command in cli.commands.items():
        silent = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not p.help]
        assert not silent, f"{name}: options without help: {silent}"
    listing = run_cli("--help").stdout
    commands = listing.split("Commands:", 1)[1]
    assert "..." not in commands  # summaries whole, not cut off
    assert "describe-dataset" in commands and "download-dataset" not in commands
    for name in ("embed-hf", "embed-dataset", "describe-dataset", "verify", "runs", "sql"):
        text = run_cli(name, "--help").stdout
        assert "Examples:\n" in text and text.count(f"  chatspace {name} ") >= 2, text


def test_describe_dataset_keeps_its_old_name_as_an_alias(tmp_path):
    args = ("--name", DEMO, "--output-root", str(tmp_path))
    new = run_cli("describe-dataset", *args)
    old = run_cli("download-dataset", *args)
    assert new.returncode == old.returncode == 0, new.stderr + old.stderr
    assert new.stdout == old.stdout and "text" in new.stdout


def test_embedding_options_are_listed_in_sections():
    sections = ["Data:", "Sampling:", "Model:", "Devices:", "Performance:", "Output:", "Run control:"]
    for command, expected in (
        ("embed-hf", sections),
        ("embed-dataset", [s for s in sections if s != "Devices:"]),
    ):
        text = run_cli(command, "--help").stdout
        headings = [line for line in text.splitlines() if line in (*sections, "Other:", "Options:")]
        assert headings == expected, text  # in this order, and no option left in a catch-all
    text = run_cli("embed-hf", "--help").stdout
    assert text.index("--seed") > text.index("Sampling:") > text.index("--dataset")
    assert text.index("--tokens-per-batch") > text.index("Performance:") > text.index("--gpus")
