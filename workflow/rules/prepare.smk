# Stage 1: build (tiny, smol) or check (external) the teacher, the student and the data, then make
# sure the teacher can supervise the student token for token before any training compute.
# Downstream rules take both outputs as ancient(): a rerun of these cheap checks does not retrain
# everything; a real change of the models reaches the runs through their `settings` digest.

EXTERNAL_PREPARE = config["prepare"]["kind"] == "external"


rule prepare:
    output:
        touch(PREPARED),
    log:
        f"{LOGS}/prepare.log",
    benchmark:
        f"{BENCH}/prepare.tsv"
    params:
        cfg=CFG,
        settings=settings(*MODEL_SECTIONS, "paths"),
    # tiny and smol train models here (prepare.num_threads, 0 = two threads, and the train job's
    # memory and time); external only checks that files exist: one CPU thread, no GPU, minutes.
    threads: 1 if EXTERNAL_PREPARE else config["prepare"].get("num_threads") or 2
    resources:
        gpu=0 if EXTERNAL_PREPARE else GPU,
        mem_mb=2000 if EXTERNAL_PREPARE else RES["mem_mb_train"],
        runtime=10 if EXTERNAL_PREPARE else RES["runtime_train"],
    shell:
        "tropd prepare --config {params.cfg} > {log} 2>&1"


rule preflight:
    input:
        ancient(PREPARED),
    output:
        PREFLIGHT,
    log:
        f"{LOGS}/preflight.log",
    benchmark:
        f"{BENCH}/preflight.tsv"
    params:
        cfg=CFG,
        settings=settings(*MODEL_SECTIONS),
    # Loads teacher and student once and scores a few samples: minutes, the memory of an eval job
    # (the paper profiles' 256 GB and 12 h of a train job would only delay it in a SLURM queue).
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=EVAL_MEM_MB,
        runtime=min(RES["runtime_train"], 60),
    shell:
        "tropd preflight --config {params.cfg} --out {output} > {log} 2>&1"
