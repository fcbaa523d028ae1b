"""A static run whose decisions leave dead computation builds, and the bundle computes what the
trained network computes.

A DAG run's masks may keep an edge into a state that no task's read-out reaches (a
hand-made mask, a run from the API; ``run_fixture.make_static_run(..., "dag")`` with mask
seed 0 keeps e5_7 and e6_7 into v_7, which no task reads out). Such a state changes no
output, so the deployed graph leaves it out (Choi & Im, Alg. 1: the reduced network is the
read-in -> read-out sub-network); ``dymu-rt build`` used to fail with a traceback
("convs missing from the exported graph"). A stored graph that does not fit its network is
one `error:` line and writes nothing. ~4.5 s on 2 cores (three small builds, five refusals).
"""

import json

import numpy as np
import pytest
import torch

from run_fixture import make_static_run, tiny_preset

from dymu_rt.methods import build_bundle, method_for
from dymu_rt.models.graph import graph_cost, materialize_graph
from dymu_rt.run.layout import RunDir


def _dead_run(tmp_path):
    """The mask-seed-0 DAG run, and the modules its stored graph calls although no head reads them."""
    run_dir = make_static_run(tmp_path / "run", "dag", tiny_preset(), mask_seed=0)
    run = RunDir(run_dir)
    _, net, graph, dec = method_for(run).load(run)
    return run_dir, run, net, dec


def _dead_modules(net, dec):
    """Edge modules the masks keep for some task but that reach no task's read-out (recomputed
    from the masks: a state is live if read out, or if a kept edge takes it to a live state)."""
    A, B, G = (np.asarray(dec["masks"][k]) for k in "ABG")
    kept, used = set(), set()
    for k in range(A.shape[0]):
        live = {i for i in range(1, A.shape[1] + 1) if B[k, i - 1]}
        for e, (i, j) in reversed(list(enumerate(net.edge_list))):
            if G[k, e] and j in live:
                live.add(i)
        kept |= {f"edges.e{i}_{j}" for e, (i, j) in enumerate(net.edge_list) if G[k, e]}
        used |= {f"edges.e{i}_{j}" for e, (i, j) in enumerate(net.edge_list) if G[k, e] and j in live}
    return kept - used


def test_dag_run_with_dead_states_builds_and_equals_the_torch_forward(tmp_path):
    run_dir, run, net, dec = _dead_run(tmp_path)
    dead = _dead_modules(net, dec)
    assert dead, "the fixture no longer keeps an edge into a state nobody reads out: pick another seed"
    summary = build_bundle(run_dir, tmp_path / "bundle", progress=False)
    assert summary["static"] == "dag"
    man = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    graph_modules = {n["module"] for n in man["static"]["graph"]["nodes"]}
    assert not dead & graph_modules, "the deployed graph still calls modules no head reads"
    (topo,) = man["topologies"].values()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "bundle" / topo["file"]), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    forward = method_for(run).decisions_forward(net, dec)
    x = torch.rand(3, 3, *tiny_preset().input_size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = forward(x)
    got = dict(zip(names, sess.run(None, {"image": x.numpy()})))
    assert len(ref) == len(got) == len(tiny_preset().tasks)
    for task, want in ref.items():
        assert np.abs(want.numpy() - got[task]).max() < 1e-4, task


def test_dag_cost_counts_only_what_runs(tmp_path):
    """Params/MACs of the DAG row = the cost of the live modules: a dead edge's conv adds
    nothing (computed here by hand from the masks, not from the pruned graph)."""
    _, run, net, dec = _dead_run(tmp_path)
    _, _, graph, _ = method_for(run).load(run)
    cost = graph_cost(materialize_graph(net, graph, net.mean.flatten(), net.std.flatten()), tiny_preset().input_size)
    used = set(graph.modules_used())
    assert not used & _dead_modules(net, dec)
    want = sum(p.numel() for m in used for p in net.get_submodule(m).parameters())
    assert cost.params == want


def test_an_old_run_with_dead_nodes_in_its_stored_graph_still_builds(tmp_path):
    """A run saved before the fix stores the unpruned graph: loading prunes it to what the
    heads read, so it builds to the same bundle graph as a run saved after the fix."""
    from dymu_rt.models.graph import GraphNode, StaticGraph, prune_graph

    run_dir, run, net, dec = _dead_run(tmp_path)
    arch_path = run_dir / "architecture.json"
    arch = json.loads(arch_path.read_text())
    clean = StaticGraph.from_json(arch["graph"])
    # Append a dead node the way the old lowering left them: an edge on a live state, read by nobody.
    src = clean.heads[0].top
    stale = StaticGraph(clean.method, clean.nodes + (GraphNode("n99", "edges.e1_2", ((src, 1.0),)),), clean.heads)
    arch["graph"] = stale.to_json()
    arch_path.write_text(json.dumps(arch))
    _, _, graph, _ = method_for(run).load(run)
    assert graph == clean and prune_graph(stale) == clean
    build_bundle(run_dir, tmp_path / "bundle", progress=False)
    man = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert StaticGraph.from_json(man["static"]["graph"]) == clean


# -- a stored graph that does not fit its network: one `error:` line, nothing written -------------

def _set_v0_from_image(g):
    """v_0 (the stem) fed the 3-channel image instead of the stride-4 stem feature: a shape error."""
    return [dict(n, inputs=[["image", 1.0]]) if n["name"] == "v0" else n for n in g["nodes"]]


_BAD_GRAPHS = {
    "unknown module": (lambda g: {**g, "nodes": [dict(n, module="edges.e1_99") if n["module"] == "edges.e1_2"
                                                 else n for n in g["nodes"]]},
                       "calls module 'edges.e1_99', which the run's network does not have"),
    "container": (lambda g: {**g, "nodes": [dict(n, module="edges") if n["module"] == "edges.e1_2" else n
                                            for n in g["nodes"]]}, "'edges', which is not a layer"),
    "head as a layer": (lambda g: {**g, "nodes": [dict(n, module="heads.depth") if n["module"] == "edges.e1_2"
                                                  else n for n in g["nodes"]]}, "calls head 'heads.depth'"),
    "missing task": (lambda g: {**g, "heads": g["heads"][1:]}, "expected one head per task"),
    "wrong shape": (lambda g: {**g, "nodes": _set_v0_from_image(g)}, "graph cannot run on a 32x32 image"),
}


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory):
    return make_static_run(tmp_path_factory.mktemp("dag") / "run", "dag", tiny_preset(), mask_seed=1)


@pytest.mark.parametrize("case", sorted(_BAD_GRAPHS))
def test_build_of_a_graph_that_does_not_fit_its_network_is_one_error_line(case, dag_run, tmp_path, capsys):
    import shutil

    from dymu_rt.cli.main import main

    run_dir = tmp_path / "run"
    shutil.copytree(dag_run, run_dir)
    arch = json.loads((run_dir / "architecture.json").read_text())
    edit, needle = _BAD_GRAPHS[case]
    arch["graph"] = edit(arch["graph"])
    (run_dir / "architecture.json").write_text(json.dumps(arch))
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(SystemExit) as e:
        main(["build", str(run_dir), "--out", str(tmp_path / "bundle")])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert e.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and needle in lines[0] and str(run_dir) in lines[0], lines[0]
    assert not (tmp_path / "bundle").exists(), "a refused build left a bundle folder"
    assert sorted(p.name for p in run_dir.iterdir()) == before
