# mmumae: set-up, demo data, demo run and tests.
#
#   make setup   .venv/ with torch, mmcv (with ops) and OpenMMLab (tools/setup_env.sh)
#   make data    + deterministic demo data in data/demo (a few seconds, once)
#   make demo    + tools/run_demo.sh
#   make lint    flake8 over the packages, tools, tests and configs (setup.cfg)
#   make test    + lint, then the test suite; fails on a lint error, on any
#                failed test and when no test ran
#   make study-data   + the ELPV copy in data/elpv (tools/dataset_converters/prepare_elpv.py)
#   make study-quick  + the quick ELPV study (docs/study.md; tools/analysis_tools/run_study.py)
#   make clean   remove data/demo, work_dirs/ and caches (keeps .venv/)
#   make distclean  clean, and remove .venv/ too
#
# Every step checks a stamp first: a second `make test` spends a few seconds
# on set-up and data before pytest starts.

VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DATA ?= data/demo
PYTEST_ARGS ?= -q -ra --durations=10

.PHONY: setup data demo lint test clean distclean transfer-demo study-data study-quick

setup:
	MMUMAE_VENV="$(abspath $(VENV))" bash tools/setup_env.sh

data: setup
	$(PY) tools/dataset_converters/make_demo_data.py --out $(DEMO_DATA)

demo: data
	bash tools/run_demo.sh

# pre-train (or reuse work_dirs/ummae_swin-mini_demo) -> fine-tune -> Mask
# R-CNN and UperNet on the demo data, and the same from random init; prints
# one table (tools/run_transfer_demo.py).
transfer-demo: data
	$(PY) tools/run_transfer_demo.py

# the ELPV study (docs/study.md): data from the installed elpv-dataset
# package, then the quick variant (seed 0 of the main Swin study)
study-data: setup
	$(PY) tools/dataset_converters/prepare_elpv.py --out data/elpv

study-quick: study-data
	$(PY) tools/analysis_tools/run_study.py configs/studies/elpv/study_quick_swin-mini.py

# pytest exits 5 when it collected no test; make fails on any non-zero exit,
# so "no test ran" fails like a failed test does.
lint: setup
	$(PY) -m flake8 mmumae runsafe mmumae_tools tools tests configs setup.py

test: data lint
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf $(DEMO_DATA) work_dirs .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
