"""The tiny profile: synthetic math / code / instruction tasks, a char-level tokenizer and a
teacher/student pair of Llama models (0.54M and 0.31M parameters), all built on a CPU in minutes.

`tropd prepare` for `prepare.kind: tiny` runs `tropd.tiny.build.prepare_tiny`. The tasks are
written in the real benchmark formats (GSM8K, HumanEval+, IFEval) so the real graders score them.
"""

# Bump when a generator, the tokenizer or the SFT recipe changes: prepared folders with another
# version are rebuilt (the version is part of the prepare stamp).
GENERATOR_VERSION = "tiny-3"
