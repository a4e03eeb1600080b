# The two commands of the README. Each sets everything up first (idempotent).
.PHONY: setup demo test lint

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/w2s demo

test: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests bench
