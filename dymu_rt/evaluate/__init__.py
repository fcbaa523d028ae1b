"""Evaluation of a controller: the paper's metrics and pictures.

* ``hypervolume``: exact hypervolume of loss vectors (any number of tasks).
* ``uniformity``: μ_r = 1 − KL(L̂ ‖ 1/N).
* ``plots``: resource-usage maps over the simplex, tree diagrams, controllability curves.
* ``controller`` / ``report``: evaluating a trained run end to end (integration layer).
"""
