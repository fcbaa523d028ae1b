"""The controller of a dynamic multi-task net: everything that turns a preference into a tree
and BN weights, and the losses that train it.

* ``hypernets``: edge hypernet h(r, c) (parent logits, maximum-likelihood tree), weight
  hypernet h̄(r, c) (BN deltas), ONNX export of both.
* ``gumbel``: Gumbel-softmax samples of parent logits and the temperature schedule.
* ``regularizer``: the branching regularizer Ω (P_use, active / inactive losses, ablations).
* ``affinity``: task affinity of the anchor net by RSA.

Preferences themselves (parsing, validation, sampling, grids, nearest) and the selector live
in the torch-free :mod:`dymu_rt.core`.
"""
