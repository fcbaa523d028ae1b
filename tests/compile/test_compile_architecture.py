"""Architecture: canonical ids equal for equal trees, different otherwise; costs."""

import dataclasses

import numpy as np

from dymu_rt.compile.architecture import Architecture, topology_salt
from dymu_rt.models.cost import CostModel
from dymu_rt.core.tree import identity_table
from run_fixture import tiny_preset


def test_equal_trees_equal_ids_different_trees_different_ids(tiny_anchor):
    L, N = tiny_anchor.num_layers, tiny_anchor.num_tasks
    salt = topology_salt(tiny_preset())
    a = identity_table(L, N)
    a[4] = [0, 0, 0]
    b = a.copy()
    b[2] = [0, 2, 1]                        # only dead nodes (2,1), (2,2) differ: same tree
    b[0] = [0, 1, 2]
    ia, ib = (Architecture.from_parents(tiny_anchor, t, salt) for t in (a, b))
    assert ia.id == ib.id and ia.parents == ib.parents
    c = a.copy()
    c[6] = [1, 1, 2]                        # a live edge differs
    ic = Architecture.from_parents(tiny_anchor, c, salt)
    assert ic.id != ia.id
    ids = {Architecture.from_parents(tiny_anchor, np.where(np.arange(L)[:, None] == k, 0, identity_table(L, N)), salt).id
           for k in range(1, L)}
    assert len(ids) == L - 1                # branching at different layers: all distinct


def test_salt_separates_model_structures():
    base = tiny_preset()
    other = dataclasses.replace(base, backbone=dataclasses.replace(base.backbone, width_mult=0.25))
    assert topology_salt(base) == topology_salt(dataclasses.replace(base, input_size=(64, 64)))
    assert topology_salt(base) != topology_salt(other)


def test_cost_and_slots(tiny_anchor):
    L, N = tiny_anchor.num_layers, tiny_anchor.num_tasks
    cm = CostModel(tiny_anchor)
    full = Architecture.from_parents(tiny_anchor, identity_table(L, N), "s", cm)
    shared = Architecture.from_parents(tiny_anchor, np.zeros((L, N), dtype=int), "s", cm)
    assert full.macs == cm.full_cost().macs and full.params == cm.full_cost().params
    assert shared.macs < full.macs and shared.params < full.params
    assert abs(full.gmacs - full.macs / 1e9) < 1e-12 and abs(full.gflops - 2 * full.macs / 1e9) < 1e-12
    assert len(full.bn_slots) == len(tiny_anchor.bn_layout)
    # Below the top layer only stream 0 is alive; every head reads its own top node; the
    # light decoder heads' BNs are modulated slots of every tree.
    alive = {s.split(".")[0] for s in shared.bn_slots}
    assert alive == ({f"node{l}_0" for l in range(L - 1)} | {f"node{L - 1}_{j}" for j in range(N)}
                     | {f"head_{t}" for t in tiny_anchor.task_names})
    assert full.flops_paper == cm.full_cost().flops_paper > full.macs
