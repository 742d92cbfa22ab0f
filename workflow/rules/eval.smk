# Stage 3: every model on every task, once per seed: the trained students (from their run's
# student/ folder) and the two reference rows, the teacher and the untrained student. With
# eval.temperature 0 the reference seeds agree; with sampling they differ like the runs do.
#
# workflow.eval_jobs picks the job granularity; the files are the same either way:
#   per_model (default): one job per (model, seed) scores every task with one model load. On a CPU
#                        profile process start-up (torch, transformers, the model) outweighs a small
#                        evaluation, so this is several times faster end to end.
#   per_task:            one job per (model, seed, task), for long GPU evaluations run in parallel.

EVAL_SHELL = (
    "tropd eval --config {params.cfg} --model {params.model} --task {params.tasks}"
    " --seed {wildcards.seed} --out {params.out} > {log} 2>&1"
)

if RES["eval_jobs"] == "per_task":

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
            out=lambda w, output: output[0],
            settings=settings("eval", *MODEL_SECTIONS),
        threads: 1
        resources:
            gpu=GPU,
            mem_mb=RES["mem_mb_train"],
            runtime=RES["runtime_train"],
        shell:
            EVAL_SHELL

else:

    rule eval:
        input:
            eval_input,
        output:
            expand(EVAL_JSON, task=TASKS, allow_missing=True),
        log:
            f"{LOGS}/eval/{{model}}/seed{{seed}}.log",
        benchmark:
            f"{BENCH}/eval/{{model}}/seed{{seed}}.tsv"
        params:
            cfg=CFG,
            model=eval_model_path,
            tasks=",".join(TASKS),
            out=lambda w: EVAL_JSON.format(model=w.model, seed=w.seed, task="{task}"),
            settings=settings("eval", *MODEL_SECTIONS),
        threads: 1
        resources:
            gpu=GPU,
            mem_mb=RES["mem_mb_train"],
            runtime=RES["runtime_train"],
        shell:
            EVAL_SHELL
