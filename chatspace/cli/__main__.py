"""`python -m chatspace.cli`: the same as the `chatspace` command."""

from chatspace.cli import main

main()
