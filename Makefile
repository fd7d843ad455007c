# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# A CPU build here (this file lies on the machine's disk). Where torch is already importable in
# the venv (e.g. a CUDA build from the system site-packages) it is kept, never replaced.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb)) $(sort $(wildcard solutions/*.ipynb))

.PHONY: dry-run demo test test-fast test-web lab notebooks bench samples lint clean

$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev,notebooks,eval,web]"
	# Meta's ImageBind model code, for the parity tests only; its declared deps would pull a
	# torchvision/torchaudio that break this environment, so none of them come along.
	$(PIP) install --no-deps "imagebind-unofficial==0.1.1"
	@$(PY) -c "import importlib.util as u, sys; bad=[m for m in ('torchvision','torchaudio') if u.find_spec(m)]; bad and print('warning: found', *bad, '- if imports fail, uninstall them (see README)')"
	$(PY) -c "import torch, transformers, diffusers, nextgpt_mini; print('installed: torch', torch.__version__, '| transformers', transformers.__version__, '| diffusers', diffusers.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nextgpt-mini demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/ -q --ignore=tests/dry_run
	HF_HUB_OFFLINE=1 $(PY) -m pytest --nbval-lax --nbval-current-env -q $(NOTEBOOKS)

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/ -q -m "not slow" --ignore=tests/dry_run

# the colab and paper profiles end to end on the CPU from a hub-shaped cache of random weights
# (benchmarks/dry_run_cache.py: 10 GB under $$NEXTGPT_DRY_RUN_DIR, default /tmp/nextgpt-dry-run, removed after)
dry-run: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/dry_run -q

# the web demo alone: its checks, a served page driven by Chromium, 20 clients at once
test-web: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/test_web.py tests/test_web_server.py -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# Re-execute every notebook top to bottom and store its outputs (what is committed).
notebooks: $(STAMP)
	for nb in $(NOTEBOOKS); do HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; done

samples: $(STAMP)
	$(VENV)/bin/nextgpt-mini make-samples --out data_samples

bench: $(STAMP)
	$(PY) benchmarks/gpu_bench.py

lint: $(STAMP)
	$(VENV)/bin/ruff check nextgpt_mini tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache
