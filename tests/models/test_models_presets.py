"""Every preset builds (node shapes agree across streams) and `dymu-rt inspect PRESET --json`."""

import json

import pytest
import torch

from cli_helpers import run_cli as _cli
from dymu_rt.models.presets import PRESETS

ALL = ["nyuv2", "pascal3", "pascal5", "cifar100", "synth-nyu", "synth-pascal", "dag-nyuv2", "dag-pascal5",
       "synth-dag-nyu"]
PAPER_SIZE = {"nyuv2", "pascal3", "pascal5", "cifar100", "dag-nyuv2", "dag-pascal5"}   # inspect costs them at full size


def test_the_presets_exist():
    assert sorted(PRESETS) == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_preset_builds_with_matching_node_boundaries(name):
    preset = PRESETS[name]
    net = preset.build().eval()          # construction asserts equal node shapes across streams
    assert net.task_names == [t.name for t in preset.tasks] and net.num_tasks == len(preset.tasks)
    # Run every stream at a small input (shapes scale with the input; a multiple of 32).
    h = w = 32 if preset.head.kind == "linear" else 64
    x = net.run_stem(net.normalize(torch.rand(1, 3, h, w)))
    with torch.no_grad():
        tops = []
        for j in range(net.num_tasks):
            cur = x
            for l, info in enumerate(net.node_infos):
                cur = net.streams[j][l](cur)
                assert cur.shape[1] == info.out_channels and h // cur.shape[2] == info.stride, (j, l)
            tops.append(cur.shape)
        assert len(set(tops)) == 1                 # a cross-task edge can feed any stream's node
        out = net(torch.rand(1, 3, h, w))
    for t in preset.tasks:
        expect = (1, t.out_channels) if preset.head.kind == "linear" else (1, t.out_channels, h, w)
        assert tuple(out[t.name].shape) == expect, t.name


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in PAPER_SIZE else n
                                  for n in ALL])
def test_inspect_preset_json(capsys, name):
    code, out, err = _cli(capsys, "inspect", name, "--json")
    assert code == 0, err
    d = json.loads(out)
    preset = PRESETS[name]
    assert [t["name"] for t in d["tasks"]] == [t.name for t in preset.tasks]
    assert d["layers"] == preset.build().num_layers
    assert d["input_size"] == list(preset.input_size)
    assert d["params"] > 0 and d["macs"] > 0 and d["gmacs"] == pytest.approx(d["macs"] / 1e9) and d["gflops"] == pytest.approx(2 * d["macs"] / 1e9)
