"""Evaluation: generation (`generation`, shared with predict), scoring and the paper's metrics (`scoring`), running
a model over records (`runner`), and the paper's benchmarks in their published layouts (`benchmarks`).

Nothing heavy is imported here: import the submodule you need.
"""
