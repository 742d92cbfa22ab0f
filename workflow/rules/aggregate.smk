# Stage 4: the paper's tables (Table 4 main, Table 5 ablation) and figures from every eval summary
# and run folder. Cheap, so on a cluster it runs on the submitting host (localrule).


localrules:
    aggregate,


rule aggregate:
    input:
        evals=expand(EVAL_JSON, model=METHODS + REFERENCES, seed=SEEDS, task=TASKS),
        runs=expand(RUN_SUMMARY, method=METHODS, seed=SEEDS),
    output:
        main_md=report(f"{TABLES}/main.md", caption="../report/main_table.rst", category="Tables"),
        main_csv=f"{TABLES}/main.csv",
        main_tex=f"{TABLES}/main.tex",
        ablation_md=report(f"{TABLES}/ablation.md", caption="../report/ablation_table.rst", category="Tables"),
        ablation_csv=f"{TABLES}/ablation.csv",
        finished_md=f"{TABLES}/finished.md",
        finished_csv=f"{TABLES}/finished.csv",
        stages=f"{TABLES}/stages.md",
        bars=report(f"{PLOTS}/benchmarks.png", caption="../report/benchmarks.rst", category="Plots"),
        curves=report(f"{PLOTS}/training_curves.png", caption="../report/training_curves.rst", category="Plots"),
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCH}/aggregate.tsv"
    params:
        cfg=CFG,
        out=lambda w, output: Path(output.main_md).parent.parent,
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    shell:
        "tropd aggregate --config {params.cfg} --out {params.out} > {log} 2>&1"
