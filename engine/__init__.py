"""The ML half of dialsum-tui: data, prompts, training, inference and Korean ROUGE.

Run as subprocesses (``python -m engine train|infer|evaluate …``). Only this package imports torch,
and only inside the functions that train or infer, so ``--help`` and the manager stay light.
"""
