"""Tables and figures of the paper from a profile's result files (used by `tropd aggregate`).

collect: read and check the result files; stats: mean and Student-t interval over seeds; tables: the
paper's Table 4 and Table 5 as data; render: Markdown / CSV / LaTeX; plots: Figures 1 and 3;
provenance: the line under every table.
"""
