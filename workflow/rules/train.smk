# Stage 2: one distillation run per (method, seed). `tropd train` writes summary.json last, both
# when the run finishes and when it diverges (exit 0: a divergence is a result), so summary.json is
# the only declared output. Checkpoints in the run folder are not outputs: Snakemake never deletes
# them, and a rerun after an interruption resumes from the newest one. With workflow.gpus_per_train
# > 1 the run is data-parallel: one process per GPU through accelerate (configs/accelerate/ddp.yaml).
#
# workflow.jobs picks the job granularity; the files are the same either way:
#   per_run    (default): one job per (method, seed): parallel runs on a cluster or several GPUs.
#   per_method: one job per method trains its seeds one after another in one process. On a small
#               CPU profile the start-up (importing torch and transformers: about 6 s here)
#               outweighs a run, so this is what makes the tiny DAG fit in minutes. If such a job is
#               interrupted, Snakemake deletes the summaries of its finished seeds; `tropd train`
#               restores them from the run folder's .finished.json instead of training again.

TRAIN_SHELL = (
    "{params.cmd} --config {params.cfg} --method {wildcards.method} --seed {params.seeds}"
    " --out {params.out} > {log} 2>&1"
)


def _train_params(seeds, out):
    return dict(cfg=CFG, seeds=seeds, out=out, settings=settings(*TRAIN_SECTIONS), cmd=train_command)


if RES["jobs"] == "per_method":

    rule train:
        input:
            ancient(PREPARED),
            ancient(PREFLIGHT),
            preset=repo_path("configs/methods/{method}.yaml"),
        output:
            expand(RUN_SUMMARY, seed=SEEDS, allow_missing=True),
        log:
            f"{LOGS}/train/{{method}}.log",
        benchmark:
            f"{BENCH}/train/{{method}}.tsv"
        params:
            **_train_params(SEED_LIST, lambda w: RUN_DIR.format(method=w.method, seed="{seed}")),
        threads: THREADS
        resources:
            gpu=TRAIN_GPUS,
            mem_mb=RES["mem_mb_train"],
            runtime=RES["runtime_train"] * len(SEEDS),
        shell:
            TRAIN_SHELL

else:

    rule train:
        input:
            ancient(PREPARED),
            ancient(PREFLIGHT),
            preset=repo_path("configs/methods/{method}.yaml"),
        output:
            RUN_SUMMARY,
        log:
            f"{LOGS}/train/{{method}}/seed{{seed}}.log",
        benchmark:
            f"{BENCH}/train/{{method}}/seed{{seed}}.tsv"
        params:
            **_train_params(lambda w: w.seed, lambda w: RUN_DIR.format(method=w.method, seed=w.seed)),
        threads: THREADS
        resources:
            gpu=TRAIN_GPUS,
            mem_mb=RES["mem_mb_train"],
            runtime=RES["runtime_train"],
        shell:
            TRAIN_SHELL
