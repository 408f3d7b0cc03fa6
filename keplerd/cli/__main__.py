"""``python -m keplerd.cli``: keplerctl, for when the script is not on PATH (``top`` runs ``logs`` so)."""

from keplerd.cli.main import main

main()
