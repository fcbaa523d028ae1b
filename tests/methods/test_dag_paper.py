"""The DAG paper's own network (Choi & Im 2023, Sec. 4.1): VGG-16's layers as the 12 hidden
states (DeepLab-v2's VGG-16 at output stride 8), DeepLab-v2 heads, and the backbone layout
of the central network (layers between states of different shapes), at paper size and at
test scale; the IR round trip of the reduced network."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from dymu_rt.models.backbones import BackboneSpec, build_nodes, build_stem
from dymu_rt.models.dag import DagNet, DagSpec, default_spec, lower_masks, state_shapes
from dymu_rt.models.graph import materialize_graph
from dymu_rt.models.heads import DeepLabV2Head, HeadSpec
from dymu_rt.models.presets import get_preset
from dymu_rt.training.dag import reduce_network


def test_vgg16_layers_are_deeplab_v2s():
    """conv1_1 is the stem; 12 nodes conv1_2..conv5_3 with VGG-16's widths; pools 1-3 at
    stride 2, pool4 at stride 1 and conv5 dilated 2 for output stride 8."""
    spec = BackboneSpec("vgg16", 16, 1.0, 8, "imagenet", shared_stem=True)
    stem, info0 = build_stem(spec)
    nodes, infos = build_nodes(spec)
    assert (info0.out_channels, info0.stride) == (64, 1)
    assert [i.out_channels for i in infos] == [64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [i.stride for i in infos] == [1, 2, 2, 4, 4, 4, 8, 8, 8, 8, 8, 8]
    assert [i.dilation for i in infos] == [1] * 9 + [2, 2, 2]
    # 13 convs of 3x3 (VGG-16's conv part: 14.71 M weights) + BN.
    convs = [m for m in [stem, *nodes] for m in m.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and sum(c.weight.numel() for c in convs) == 14_710_464
    x = torch.rand(1, 3, 321, 321)
    with torch.no_grad():
        h = stem(x)
        for n in nodes:
            h = n(h)
    assert h.shape == (1, 512, 41, 41)                  # ceil(321 / 8): DeepLab-v2's 41x41 map
    os16 = dataclasses.replace(spec, output_stride=16)
    assert [i.stride for i in build_nodes(os16)[1]][-3:] == [16, 16, 16]
    with pytest.raises(ValueError, match="shared stem"):
        build_nodes(dataclasses.replace(spec, shared_stem=False))


def test_deeplab_v2_head_is_aspp_l():
    """Four dilated branches (rates 6, 12, 18, 24) of conv3x3 -> 1x1 -> 1x1 logits, summed."""
    spec = HeadSpec("deeplabv2", 1024, (6, 12, 18, 24), 0, 0)
    head = DeepLabV2Head(512, 13, spec).eval()
    per_branch = (512 * 9 + 1) * 1024 + (1024 + 1) * 1024 + (1024 + 1) * 13
    assert sum(p.numel() for p in head.parameters()) == 4 * per_branch
    dil = [m.dilation[0] for m in head.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert dil == [6, 12, 18, 24]
    small = DeepLabV2Head(8, 3, HeadSpec("deeplabv2", 16, (1, 2), 0, 0)).eval()
    x = torch.rand(2, 8, 5, 5)
    with torch.no_grad():
        y = small(x, None, (40, 40))
        branch_sum = small.branches[0](x) + small.branches[1](x)
    assert y.shape == (2, 3, 40, 40)
    assert torch.allclose(y, torch.nn.functional.interpolate(branch_sum, size=(40, 40), mode="bilinear",
                                                             align_corners=False))


@pytest.mark.parametrize("flow,edges", [(3, 30), (5, 45), (7, 56)])
def test_paper_preset_central_network(flow, edges):
    """dag-nyuv2: 12 VGG-shaped states, flow-restricted edges, one read-in layer per state,
    read-out layers only for states not already of the last state's shape."""
    preset = get_preset("dag-nyuv2")
    spec = default_spec(preset, flow)
    assert (spec.layout, spec.states, spec.flow) == ("backbone", 12, flow)
    net = DagNet(preset, spec)
    assert len(net.edge_list) == edges and all(j - i <= flow for i, j in net.edge_list)
    shapes = state_shapes(preset, spec)
    for i, j in net.edge_list:                          # e_ij makes v_j's shape from v_i's
        conv = net.edges[f"e{i}_{j}"].conv.conv
        assert (conv.in_channels, conv.out_channels) == (shapes[i].out_channels, shapes[j].out_channels)
        assert len(net.edges[f"e{i}_{j}"].pool) == (shapes[j].stride // shapes[i].stride).bit_length() - 1
        assert conv.dilation[0] == shapes[j].dilation
    assert sorted(net.readins) == sorted(f"r{j}" for j in range(1, 13))
    assert sorted(net.readouts) == sorted(f"o{i}" for i in range(1, 7))     # states 7-12 are 512 @ s8
    assert net.stem_low is None and set(net.heads) == {"semseg", "normals", "depth"}
    with pytest.raises(ValueError, match="12 states"):
        default_spec(preset, flow, states=8)


def _random_masks(net, seed):
    g = torch.Generator().manual_seed(seed)
    K, N, E = len(net.task_names), net.spec.states, len(net.edge_list)
    with torch.no_grad():
        for p in net.upper_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 2)
    return tuple(torch.as_tensor(m, dtype=torch.float32) for m in reduce_network(net))


@pytest.mark.parametrize("flow", [3, 5, 7])
def test_backbone_layout_round_trip(flow):
    """Algorithm 1's reduced network: training forward == static graph == folded ONNX (1e-4);
    read-in layers are computed once and shared by the tasks that use them."""
    import onnxruntime as ort

    from dymu_rt.compile.export import export_tree_model
    from dymu_rt.compile.fold_modules import fold_bn

    preset = dataclasses.replace(get_preset("synth-dag-nyu"), input_size=(40, 40))
    torch.manual_seed(flow)
    net = DagNet(preset, default_spec(preset, flow))
    x = torch.rand(2, 3, 40, 40)
    net.train()
    with torch.no_grad():
        net(x)                                          # BN running statistics
    masks = _random_masks(net, flow)
    net.eval()
    with torch.no_grad():
        ref = net(x, masks)
        soft = net(x)
    assert set(soft) == set(ref) and all(torch.isfinite(v).all() for v in soft.values())
    graph = lower_masks(net, *masks)
    assert all(h.low is None for h in graph.heads)
    readins = [n for n in graph.nodes if n.module and n.module.startswith("readins.")]
    assert len(readins) == len({n.module for n in readins})           # one node per read-in layer
    gm = materialize_graph(net, graph, preset.mean, preset.std)
    with torch.no_grad():
        out = dict(zip(gm.task_names, gm(x)))
    for t in ref:
        assert torch.allclose(ref[t], out[t], atol=1e-5), t
    model = export_tree_model(fold_bn(gm), (40, 40), list(gm.task_names))
    onnx_out = ort.InferenceSession(model.SerializeToString()).run(None, {"image": x.numpy()})
    for t, o in zip(gm.task_names, onnx_out):
        assert np.abs(ref[t].numpy() - o).max() < 1e-4, t


def test_backbone_layout_refuses_what_it_cannot_build():
    nyu = get_preset("synth-nyu")
    with pytest.raises(ValueError, match="VGG-16"):
        DagNet(nyu, DagSpec(states=12, flow=3, layout="backbone"))
    vgg = get_preset("synth-dag-nyu")
    with pytest.raises(ValueError, match="skip"):
        DagNet(dataclasses.replace(vgg, head=HeadSpec("light", 0, (), 16, 48)), default_spec(vgg, 3))
    with pytest.raises(ValueError, match="layout"):
        DagNet(vgg, DagSpec(states=12, flow=3, layout="sideways"))


TINY = ["--anchor-steps", "2", "--edge-steps", "2", "--weight-steps", "2", "--batch", "4",
        "--n-train", "8", "--n-val", "4", "--quiet"]


@pytest.mark.slow
def test_paper_network_trains_builds_checks_end_to_end(capsys, tmp_path):
    """synth-dag-nyu (the paper's network at CPU scale): train --method dag, build, check;
    AdaShare refuses a backbone without residual blocks before writing anything."""
    run = tmp_path / "dag"
    code, _, err = run_cli(capsys, "train", "--method", "dag", "--flow", "5", "--preset", "synth-dag-nyu",
                           "--out", str(run), *TINY)
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method_config"]["states"] == 12 and cfg["method_config"]["flow"] == 5
    arch = json.loads((run / "architecture.json").read_text())
    assert any(n["module"] and n["module"].startswith("readins.") for n in arch["graph"]["nodes"])
    code, _, err = run_cli(capsys, "build", str(run), "--out", str(tmp_path / "bundle"))
    assert code == 0, err
    code, out, err = run_cli(capsys, "check", str(tmp_path / "bundle"), "--scenes", "2")
    assert code == 0, err
    assert "static" in out and "passed" in out
    code, _, err = run_cli(capsys, "train", "--method", "adashare", "--preset", "synth-dag-nyu",
                           "--out", str(tmp_path / "ada"), *TINY)
    assert code != 0 and err.startswith("error: --method adashare skips residual blocks")
    assert not (tmp_path / "ada").exists()


def test_inspect_vgg_preset_shows_the_dag_network(capsys):
    code, out, err = run_cli(capsys, "inspect", "synth-dag-nyu", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["backbone"] == "vgg16 x0.125"
    assert [(r["flow"], r["states"], r["edges"]) for r in d["dag"]] == [(3, 12, 30), (5, 12, 45), (7, 12, 56),
                                                                      (9, 12, 63)]
    params = [r["params"] for r in d["dag"]]
    assert params == sorted(params) and len(set(params)) == 4       # more edges, more layers
    code, out, _ = run_cli(capsys, "inspect", "synth-nyu", "--json")
    assert code == 0 and "dag" not in json.loads(out)
