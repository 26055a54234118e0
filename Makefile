# bgshift_tf: every target creates the virtual environment itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2
export CUDA_VISIBLE_DEVICES ?=

.PHONY: venv browser demo experiments study test bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The main job on the built-in synthetic world (see README).
demo: $(STAMP)
	$(PY) -m bgshift_tf.pipeline --flagfile=bgshift_tf/configs/demo.flags

# Headless Chromium for the report's browser test (Debian package). Best effort: without it (not root,
# no apt) the browser test is skipped with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the report browser test will be skipped"

# The paper's Table 2 / Table 3 comparisons on the synthetic world (reuses the demo's finished stages).
experiments: $(STAMP)
	$(PY) -m bgshift_tf.experiments --flagfile=bgshift_tf/configs/experiments_demo.flags

# The reference study, one part per run: every Table 2/3 row, both targets, training seed $(SEEDS) on the study
# world (configs/study.flags), written to docs/study/seed_$(SEEDS).json; then docs/RESULTS.md merged from every
# part there (python -m bgshift_tf.results). Re-running resumes the seed's finished stages.
SEEDS ?= 0
study: $(STAMP)
	$(PY) -m bgshift_tf.experiments --flagfile=bgshift_tf/configs/study.flags --seeds=$(SEEDS)
	$(PY) -m bgshift_tf.results --parts=docs/study --out=docs/RESULTS.md

# The layers contract (pyproject.toml [tool.importlinter]), then the whole test suite (what .ci/run calls).
test: $(STAMP) browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --dist loadfile -q tests

# Speed and memory benchmarks, as JSON (torch is optional: PyTorch columns are skipped without it).
bench: $(STAMP)
	$(PY) -m bgshift_tf.bench --out=runs/bench/bench.json

clean:
	rm -rf runs data_synthetic tfrecords/*/ saved_models/*/
