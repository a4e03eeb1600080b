# The two commands of the README. Each sets everything up first (idempotent).
.PHONY: setup engine browser demo test lint docs mutants

setup:
	@bash scripts/setup.sh test

# the first command installs only what the demo needs (the library and its scorers)
setup-demo:
	@bash scripts/setup.sh demo

# the real OpenAI-compatible engine (vLLM, CPU build) that the black-box backend's tests start
engine:
	@bash scripts/engine.sh

# Debian's headless chromium (and playwright) for the playground's browser test
browser: setup
	@bash scripts/browser.sh

demo: setup-demo
	.venv/bin/w2s demo

# The test files run in parallel, one pytest-xdist worker per core (at most 4: each worker loads
# its own models and servers). A file's tests stay in one worker (`--dist loadfile`): the vLLM
# server of test_vllm.py starts once. (`--dist loadgroup` would group by mark, but does not
# group at all on pytest 9.2: pytest-xdist#1386.) TEST_JOBS=0 runs them one by one.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

test: setup engine browser
	.venv/bin/ruff check src tests bench
	.venv/bin/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --durations=15

lint: setup
	.venv/bin/ruff check src tests bench

# The documentation site (mkdocs.yml, pages in docs/), served with live reload on
# http://127.0.0.1:8000; tests/test_docs_site.py builds it with --strict on every test run
docs: setup
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs serve

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml; not part of `test` or
# CI: a full run takes two to three hours on one core). Results are kept in mutants/ and a rerun
# resumes: only mutants without a verdict run (new ones, those of changed functions, the rest of
# an interrupted run). mutmut never re-tests a verdict, so after adding tests re-check the
# survivors with `.venv/bin/mutmut run $(.venv/bin/python scripts/mutation_score.py --names)`,
# or delete mutants/ to start over. MUTANTS_JOBS sets the worker processes (default: all cores).
# The target ends with the per-module score table; `scripts/mutation_score.py --survivors` lists
# the survivors and `.venv/bin/mutmut show NAME` prints one mutant's diff.
MUTMUT_VERSION = 3.8.1
MUTANTS_JOBS ?= $(shell nproc 2>/dev/null || echo 1)

mutants: setup
	.venv/bin/pip install -q 'mutmut==$(MUTMUT_VERSION)'
	.venv/bin/mutmut run --max-children $(MUTANTS_JOBS)
	@echo
	.venv/bin/python scripts/mutation_score.py
