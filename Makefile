# subnets: `make demo` and `make test` are all the set-up a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 resolves to a local CPU wheel here; elsewhere override, e.g.
#   make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup system-deps demo test check lint test-all bench report ui dashboard reference docs bytecode-files clean

setup: $(VENV)/.installed

# uv where it can be installed (16 s here against pip's ~70 s), from the sources pip is configured with
# (.ci/uv_env.py) and the same versions; pip otherwise. The venv is made without pip, and this Python's pip puts uv in
# it, then uv puts pip in it (0.5 s against venv's own pip install, 7 s); without this Python's pip, venv's own. Then
# the modules subnets and its tests import are compiled to bytecode, on every core (.ci/bytecode.py: without it, every
# process where PYTHONDONTWRITEBYTECODE is set, as on the project's machines, compiles torch, transformers and MLflow
# again as it imports them). The project's own modules are compiled too (a module edited later is compiled again, in
# memory, when imported).
$(VENV)/.installed: pyproject.toml .ci/bytecode-files.txt
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	if test -x $(BIN)/uv \
			|| $(PYTHON) -m pip --python $(BIN)/python install -q --disable-pip-version-check uv 2>/dev/null \
			|| ($(BIN)/python -m ensurepip --default-pip >/dev/null \
				&& $(BIN)/pip install -q --disable-pip-version-check uv 2>/dev/null); then \
		eval "$$($(PYTHON) .ci/uv_env.py $(BIN)/python)" && \
		$(BIN)/uv pip install -q --python $(BIN)/python pip $(TORCH_SPEC) && \
		$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test]'; \
	else \
		$(BIN)/pip install -q --disable-pip-version-check --no-compile $(TORCH_SPEC) && \
		$(BIN)/pip install -q --disable-pip-version-check --no-compile -e '.[test]'; \
	fi
	$(BIN)/python .ci/bytecode.py compile registry runners reports tests benchmarks
	touch $@

demo: setup
	$(BIN)/subnets validate
	$(BIN)/subnets run demo
	$(BIN)/subnets report --experiment demo

# PostgreSQL for the tests of a queue shared between machines, Chromium for the test that opens the report, Slurm
# and munge for the job-array test (Debian's packages; need root). Where they cannot be installed those tests are
# skipped and say why.
system-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v chromium >/dev/null && command -v slurmctld >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium slurm-wlm munge >/dev/null; \
	else echo "note: PostgreSQL, Chromium or Slurm is not installed and this is not root: their tests will be skipped"; fi

# Two test processes on the two cores, each with one torch thread (a process per core; torch threads beyond
# the cores make every process many times slower). The suite's heavy tests are real processes and servers; with
# worksteal a process that runs out of tests takes some of the other's, so the last minutes are not one long tail.
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SUITE := $(BIN)/pytest -q -m "not slow" -n 2 --dist worksteal
PYTEST_FAST := $(ONE_THREAD) $(SUITE)

# The packages (pip/uv) and the system packages (apt) install side by side.
test:
	$(MAKE) -j2 setup system-deps
	$(MAKE) docs lint
	$(PYTEST_FAST)

# The edit-run loop (under a minute): lint, then the tests that need no server, browser or real run.
check: setup lint
	$(PYTEST_FAST) -x tests/registry tests/runners/data tests/runners/pruning tests/runners/cka \
		tests/reports/test_report_sql.py tests/project/test_layering.py tests/project/test_import_cycles.py

lint: setup  # ruff: lint and format (line length 120, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-all: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/pruning.py
	$(BIN)/python benchmarks/l0.py
	$(BIN)/python benchmarks/cka.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/resume.py
	$(BIN)/python benchmarks/logging_share.py
	$(BIN)/python benchmarks/trainer.py
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/queue_load.py
	$(BIN)/python benchmarks/worker_start.py
	$(BIN)/python benchmarks/queue_open.py
	$(BIN)/python benchmarks/heap_threshold.py
	$(BIN)/python benchmarks/test_loop.py
	$(BIN)/python benchmarks/suite_profile.py

report: setup
	$(BIN)/subnets report

ui: setup
	$(BIN)/subnets ui

dashboard: setup  # optuna-dashboard on the study storage (the queue), http://127.0.0.1:8080
	$(BIN)/subnets dashboard

reference: setup  # regenerate docs/reference.md (from the schema) and docs/results.md (from the results contract)
	$(BIN)/python -c "from registry.explain import write_docs; write_docs('docs')"

docs: setup  # build the documentation site (mkdocs.yml, docs/) into out/site; a broken link fails it
	$(BIN)/mkdocs build --strict -d out/site  # no -q: it hides the warnings that --strict fails on

# Rewrite .ci/bytecode-files.txt, the site-packages modules `make setup` compiles: those that any process of the test
# suite imports (run it again after a large change of the dependencies)
bytecode-files: setup
	$(ONE_THREAD) $(BIN)/python .ci/bytecode.py record -- $(SUITE)

clean:
	rm -rf out .pytest_cache
