# The mismatch sweep (configs/sweep.yaml; tropd/sweep.py has the layout and the arms): one teacher,
# prepared once; per level of prepare.mismatch a student, a preflight, every arm's training (all
# seeds in one job) and evaluation, and the level's teacher and untrained-student reference rows;
# then one aggregate over every level (tables, plots, claims.md). Included by the Snakefile instead
# of prepare/train/eval/aggregate.smk when the profile has sweep.levels.

from tropd.sweep import arm as sweep_arm, arms as sweep_arms, level_models, level_name, level_overrides

LEVELS = {level_name(x): x for x in RUN_CONFIG.sweep.levels}
ARMS = {name: [a.name for a in sweep_arms(RUN_CONFIG, x)] for name, x in LEVELS.items()}
ALL_ARMS = sorted({a for names in ARMS.values() for a in names})
TEACHER_FLAG = f"{MODELS}/.prepared-teacher"
STUDENT_FLAG = f"{MODELS}/m{{level}}/.prepared"
LEVEL_DIR = f"{RESULTS}/m{{level}}"
SWEEP_RUN = f"{LEVEL_DIR}/runs/{{arm}}/seed{{seed}}"
SWEEP_SUMMARY = f"{SWEEP_RUN}/summary.json"
SWEEP_EVAL = f"{LEVEL_DIR}/evals/{{row}}/seed{{seed}}/{{task}}.json"


wildcard_constraints:
    level=_alternatives(LEVELS),
    arm=_alternatives(ALL_ARMS),
    row=_alternatives(ALL_ARMS + REFERENCES),


def _level_args(w):
    return " ".join(level_overrides(RUN_CONFIG, LEVELS[w.level]))


def _arm_args(w):
    return " ".join([*level_overrides(RUN_CONFIG, LEVELS[w.level]),
                     *sweep_arm(RUN_CONFIG, LEVELS[w.level], w.arm).overrides])


rule prepare_teacher:
    output:
        touch(TEACHER_FLAG),
    log:
        f"{LOGS}/prepare/teacher.log",
    benchmark:
        f"{BENCH}/prepare/teacher.tsv"
    params:
        cfg=CFG,
        settings=settings("prepare", "teacher", "paths"),
    threads: config["prepare"].get("num_threads") or 2
    resources:
        mem_mb=RES["mem_mb_train"],
        runtime=RES["runtime_train"],
    shell:
        "tropd prepare --config {params.cfg} prepare.build=teacher > {log} 2>&1"


rule prepare_student:
    input:
        ancient(TEACHER_FLAG),
    output:
        touch(STUDENT_FLAG),
    log:
        f"{LOGS}/prepare/m{{level}}.log",
    benchmark:
        f"{BENCH}/prepare/m{{level}}.tsv"
    params:
        cfg=CFG,
        args=_level_args,
        settings=settings(*MODEL_SECTIONS, "paths"),
    threads: config["prepare"].get("num_threads") or 2
    resources:
        mem_mb=RES["mem_mb_train"],
        runtime=RES["runtime_train"],
    shell:
        "tropd prepare --config {params.cfg} prepare.build=student {params.args} > {log} 2>&1"


rule preflight:
    input:
        ancient(TEACHER_FLAG),
        ancient(STUDENT_FLAG),
    output:
        f"{LEVEL_DIR}/preflight.json",
    log:
        f"{LOGS}/preflight/m{{level}}.log",
    benchmark:
        f"{BENCH}/preflight/m{{level}}.tsv"
    params:
        cfg=CFG,
        args=_level_args,
    threads: 1
    resources:
        mem_mb=EVAL_MEM_MB,
        runtime=10,
    shell:
        "tropd preflight --config {params.cfg} --out {output} {params.args} > {log} 2>&1"


rule train:
    input:
        ancient(STUDENT_FLAG),
        ancient(f"{LEVEL_DIR}/preflight.json"),
    output:
        expand(SWEEP_SUMMARY, seed=SEEDS, allow_missing=True),
    log:
        f"{LOGS}/train/m{{level}}/{{arm}}.log",
    benchmark:
        f"{BENCH}/train/m{{level}}/{{arm}}.tsv"
    params:
        cfg=CFG,
        method=lambda w: sweep_arm(RUN_CONFIG, LEVELS[w.level], w.arm).method,
        seeds=SEED_LIST,
        out=lambda w: SWEEP_RUN.format(level=w.level, arm=w.arm, seed="{seed}"),
        args=_arm_args,
        settings=settings(*TRAIN_SECTIONS),
    threads: THREADS
    resources:
        mem_mb=RES["mem_mb_train"],
        runtime=RES["runtime_train"] * len(SEEDS),
    shell:
        "tropd train --config {params.cfg} --method {params.method} --seed {params.seeds} --out {params.out}"
        " {params.args} > {log} 2>&1"


def _eval_input(w):
    if w.row == "teacher":
        return [ancient(TEACHER_FLAG)]
    if w.row == "student":
        return [ancient(STUDENT_FLAG.format(level=w.level))]
    return expand(SWEEP_SUMMARY, level=w.level, arm=w.row, seed=SEEDS)


def _eval_model(w):
    if w.row == "teacher":
        return config["teacher"]["path"]
    if w.row == "student":
        return f"{level_models(RUN_CONFIG, LEVELS[w.level])}/student"
    return f"{SWEEP_RUN.format(level=w.level, arm=w.row, seed='{seed}')}/student"


rule eval:
    input:
        _eval_input,
    output:
        expand(SWEEP_EVAL, seed=SEEDS, task=TASKS, allow_missing=True),
    log:
        f"{LOGS}/eval/m{{level}}/{{row}}.log",
    benchmark:
        f"{BENCH}/eval/m{{level}}/{{row}}.tsv"
    params:
        cfg=CFG,
        model=_eval_model,
        tasks=",".join(TASKS),
        seeds=SEED_LIST,
        out=lambda w: SWEEP_EVAL.format(level=w.level, row=w.row, seed="{seed}", task="{task}"),
        settings=settings("eval", *MODEL_SECTIONS),
    threads: EVAL_THREADS
    resources:
        mem_mb=EVAL_MEM_MB,
        runtime=eval_runtime_per_method(),
    shell:
        "tropd eval --config {params.cfg} --model {params.model} --task {params.tasks}"
        " --seed {params.seeds} --out {params.out} > {log} 2>&1"


def _all_evals():
    return [SWEEP_EVAL.format(level=lv, row=row, seed=s, task=t)
            for lv, names in ARMS.items() for row in names + REFERENCES for s in SEEDS for t in TASKS]


def _all_runs():
    return [SWEEP_SUMMARY.format(level=lv, arm=a, seed=s) for lv, names in ARMS.items() for a in names
            for s in SEEDS]


localrules:
    aggregate,


rule aggregate:
    input:
        evals=_all_evals(),
        runs=_all_runs(),
    output:
        scores=f"{TABLES}/scores.md",
        scores_csv=f"{TABLES}/scores.csv",
        vs_opd=f"{TABLES}/vs_opd.md",
        vs_opd_csv=f"{TABLES}/vs_opd.csv",
        claims=f"{RESULTS}/claims.md",
        stages=f"{TABLES}/stages.md",
        mismatch=f"{PLOTS}/score_vs_mismatch.png",
        curves=f"{PLOTS}/learning_curves.png",
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCH}/aggregate.tsv"
    params:
        cfg=CFG,
        out=RESULTS,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "tropd aggregate --config {params.cfg} --out {params.out} > {log} 2>&1"
