# Stage 2: one distillation run per (method, seed). `tropd train` writes summary.json last, both
# when the run finishes and when it diverges (exit 0: a divergence is a result), so summary.json is
# the only declared output. Checkpoints in the run folder are not outputs: Snakemake never deletes
# them, and a rerun after an interruption resumes from the newest one. With workflow.gpus_per_train
# > 1 the run is data-parallel: one process per GPU through accelerate (configs/accelerate/ddp.yaml).


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
        cfg=CFG,
        out=lambda w: RUN_DIR.format(method=w.method, seed=w.seed),
        settings=settings(*TRAIN_SECTIONS),
        cmd=train_command(),
    threads: RES["threads_train"]
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=RES["mem_mb_train"],
        runtime=RES["runtime_train"],
    shell:
        "{params.cmd} --config {params.cfg} --method {wildcards.method} --seed {wildcards.seed}"
        " --out {params.out} > {log} 2>&1"
