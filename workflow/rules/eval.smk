# Stage 3: every model on every task, once per seed: the trained students (from their run's
# student/ folder) and the two reference rows, the teacher and the untrained student. With
# eval.temperature 0 the reference seeds agree; with sampling they differ like the runs do.
#
# workflow.jobs picks the job granularity (see train.smk); the files are the same either way:
#   per_run    (default): one job per (model, seed, task), for long GPU evaluations in parallel.
#   per_method: one job per model scores every seed and task with one process start-up.
#
# Resources: one GPU at most, EVAL_THREADS (one GPU's share of a train job's threads), and the eval
# settings workflow.mem_mb_eval, runtime_eval and runtime_eval_tasks (per task; a per_method job
# gets their sum over its seeds and tasks), each 0 = the train value (common.smk).

EVAL_SHELL = (
    "tropd eval --config {params.cfg} --model {params.model} --task {params.tasks}"
    " --seed {params.seeds} --out {params.out} > {log} 2>&1"
)

if RES["jobs"] == "per_method":

    rule eval:
        input:
            eval_input,
        output:
            expand(EVAL_JSON, seed=SEEDS, task=TASKS, allow_missing=True),
        log:
            f"{LOGS}/eval/{{model}}.log",
        benchmark:
            f"{BENCH}/eval/{{model}}.tsv"
        params:
            cfg=CFG,
            model=eval_model_path,
            tasks=",".join(TASKS),
            seeds=SEED_LIST,
            out=lambda w: EVAL_JSON.format(model=w.model, seed="{seed}", task="{task}"),
            settings=settings("eval", *MODEL_SECTIONS),
        threads: EVAL_THREADS
        resources:
            gpu=GPU,
            mem_mb=EVAL_MEM_MB,
            runtime=eval_runtime_per_method(),
        shell:
            EVAL_SHELL

else:

    rule eval:
        input:
            eval_input,
        output:
            EVAL_JSON,
        log:
            f"{LOGS}/eval/{{model}}/seed{{seed}}/{{task}}.log",
        benchmark:
            f"{BENCH}/eval/{{model}}/seed{{seed}}/{{task}}.tsv"
        params:
            cfg=CFG,
            model=eval_model_path,
            tasks=lambda w: w.task,
            seeds=lambda w: w.seed,
            out=lambda w, output: output[0],
            settings=settings("eval", *MODEL_SECTIONS),
        threads: EVAL_THREADS
        resources:
            gpu=GPU,
            mem_mb=EVAL_MEM_MB,
            runtime=lambda w: eval_runtime(w.task),
        shell:
            EVAL_SHELL
