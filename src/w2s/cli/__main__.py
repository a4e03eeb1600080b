"""``python -m w2s.cli``."""

from w2s.cli import main

main()
