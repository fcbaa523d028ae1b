"""--init pretrained:FILE: ImageNet weights in torchvision's / timm's key layouts onto the stem
and every stream. The weight files are made here, in those layouts, from the real key names
of torchvision's ``resnet18/34`` and ``mobilenet_v2`` and timm's ``resnet*`` /
``mobilenetv2_100`` module structure (written out below; no download). Cost: ~3 s (a
width-1.0 ResNet-34 anchor with 2 streams is the largest model built).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from dymu_rt.core.errors import ValidationError
from dymu_rt.models.anchor import AnchorNet, TaskSpec
from dymu_rt.models.backbones import BackboneSpec
from dymu_rt.models.heads import HeadSpec
from dymu_rt.models.pretrained import detect_layout, load_pretrained_backbone

torch.set_num_threads(1)

TASKS = (TaskSpec("semseg", "segmentation", 13, 1.0, 13), TaskSpec("depth", "depth", 1, 1.0))
HEAD = HeadSpec("light", 0, (), 16, 48)


def _bn(d, name, c, g):
    d[f"{name}.weight"] = torch.randn(c, generator=g)
    d[f"{name}.bias"] = torch.randn(c, generator=g)
    d[f"{name}.running_mean"] = torch.randn(c, generator=g)
    d[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
    d[f"{name}.num_batches_tracked"] = torch.tensor(7)


def _conv(d, name, cout, cin, k, g):
    d[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g)


def torchvision_resnet(depth: int, seed: int = 0) -> dict:
    """torchvision.models.resnet{18,34}().state_dict()'s keys and shapes (timm's resnet* match)."""
    g = torch.Generator().manual_seed(seed)
    d: dict = {}
    _conv(d, "conv1", 64, 3, 7, g)
    _bn(d, "bn1", 64, g)
    cin = 64
    for s, (n, w) in enumerate(zip({18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth], (64, 128, 256, 512)), start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            _conv(d, f"{p}.conv1", w, cin, 3, g)
            _bn(d, f"{p}.bn1", w, g)
            _conv(d, f"{p}.conv2", w, w, 3, g)
            _bn(d, f"{p}.bn2", w, g)
            if b == 0 and (s > 1):
                _conv(d, f"{p}.downsample.0", w, cin, 1, g)
                _bn(d, f"{p}.downsample.1", w, g)
            cin = w
    d["fc.weight"] = torch.randn(1000, 512, generator=g)
    d["fc.bias"] = torch.randn(1000, generator=g)
    return d


_MNV2 = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]


def mobilenetv2(layout: str, seed: int = 0) -> dict:
    """torchvision.models.mobilenet_v2() or timm mobilenetv2_100 state-dict keys and shapes."""
    g = torch.Generator().manual_seed(seed)
    d: dict = {}
    tv = layout == "torchvision"
    _conv(d, "features.0.0" if tv else "conv_stem", 32, 3, 3, g)
    _bn(d, "features.0.1" if tv else "bn1", 32, g)
    cin, k = 32, 1
    for stage, (t, c, n) in enumerate(_MNV2):
        for i in range(n):
            h = cin * t
            if tv:
                p = f"features.{k}.conv"
                if t == 1:
                    d[f"{p}.0.0.weight"] = torch.randn(h, 1, 3, 3, generator=g)
                    _bn(d, f"{p}.0.1", h, g)
                    _conv(d, f"{p}.1", c, h, 1, g)
                    _bn(d, f"{p}.2", c, g)
                else:
                    _conv(d, f"{p}.0.0", h, cin, 1, g)
                    _bn(d, f"{p}.0.1", h, g)
                    d[f"{p}.1.0.weight"] = torch.randn(h, 1, 3, 3, generator=g)
                    _bn(d, f"{p}.1.1", h, g)
                    _conv(d, f"{p}.2", c, h, 1, g)
                    _bn(d, f"{p}.3", c, g)
            else:
                p = f"blocks.{stage}.{i}"
                if t == 1:
                    d[f"{p}.conv_dw.weight"] = torch.randn(h, 1, 3, 3, generator=g)
                    _bn(d, f"{p}.bn1", h, g)
                    _conv(d, f"{p}.conv_pw", c, h, 1, g)
                    _bn(d, f"{p}.bn2", c, g)
                else:
                    _conv(d, f"{p}.conv_pw", h, cin, 1, g)
                    _bn(d, f"{p}.bn1", h, g)
                    d[f"{p}.conv_dw.weight"] = torch.randn(h, 1, 3, 3, generator=g)
                    _bn(d, f"{p}.bn2", h, g)
                    _conv(d, f"{p}.conv_pwl", c, h, 1, g)
                    _bn(d, f"{p}.bn3", c, g)
            cin, k = c, k + 1
    if tv:
        _conv(d, "features.18.0", 1280, 320, 1, g)
        _bn(d, "features.18.1", 1280, g)
        d["classifier.1.weight"] = torch.randn(1000, 1280, generator=g)
    else:
        _conv(d, "conv_head", 1280, 320, 1, g)
        _bn(d, "bn2", 1280, g)
        d["classifier.weight"] = torch.randn(1000, 1280, generator=g)
    return d


def _anchor(kind: str, depth: int = 18, width: float = 1.0, affine_last: bool = True) -> AnchorNet:
    spec = BackboneSpec(kind, depth, width, 8, "imagenet", shared_stem=True, raspp_channels=16,
                        affine_last_bn=affine_last)
    return AnchorNet(spec, HEAD, TASKS, (64, 64))


def _check_loaded(anchor: AnchorNet, src: dict, pairs: list[tuple[str, str]]) -> None:
    state = anchor.state_dict()
    for s, dst in pairs:
        if dst is None:                                  # γ/β of a BN without affine parameters
            continue
        for j in range(anchor.num_tasks):
            d = dst.replace("streams.0.", f"streams.{j}.", 1)
            assert torch.equal(state[d], src[s]), (s, d)


@pytest.mark.parametrize("depth", [18, 34])
def test_torchvision_resnet_goes_onto_the_stem_and_every_stream(tmp_path, depth):
    from dymu_rt.models.pretrained import mapping

    src = torchvision_resnet(depth)
    path = tmp_path / f"resnet{depth}.safetensors"
    save_file(src, str(path))
    anchor = _anchor("resnet", depth)
    summary = load_pretrained_backbone(anchor, path)
    assert summary["streams"] == 2 and "resnet" in summary["layout"]
    pairs = mapping(anchor, "resnet", "torchvision/timm")
    # Every backbone tensor of the file is used (only fc is left), each stream got the same one.
    used = {s for s, _ in pairs}
    assert {k for k in src if not k.endswith("num_batches_tracked")} - used == {"fc.weight", "fc.bias"}
    _check_loaded(anchor, src, pairs)
    assert torch.equal(anchor.stem.conv.conv.weight, src["conv1.weight"])
    # The R-ASPP is not part of an ImageNet classifier: it differs between streams (random init).
    assert not torch.equal(anchor.streams[0][-1].conv.conv.weight, anchor.streams[1][-1].conv.conv.weight)


@pytest.mark.parametrize("layout", ["torchvision", "timm"])
def test_mobilenetv2_layouts_go_onto_every_stream(tmp_path, layout):
    from dymu_rt.models.pretrained import mapping

    src = mobilenetv2(layout)
    assert detect_layout(src) == ("mobilenetv2", layout)
    path = tmp_path / "mnv2.pt"
    torch.save(src, path)                               # a torch state dict, read weights_only
    anchor = _anchor("mobilenetv2", affine_last=False)  # PASCAL's nets: last BN without γ/β
    load_pretrained_backbone(anchor, path)
    pairs = mapping(anchor, "mobilenetv2", layout)
    _check_loaded(anchor, src, pairs)
    # 52 convs + BNs: stem, 17 blocks (the first with 2 convs, the others 3).
    assert sum(1 for _, d in pairs if d is not None and d.endswith("conv.weight")) == 1 + 2 + 16 * 3
    assert sum(1 for _, d in pairs if d is None) == 2 * 17     # the last BN's γ, β of every block


def test_the_two_mobilenetv2_layouts_give_the_same_anchor(tmp_path):
    """Same tensors under torchvision's and timm's names -> identical anchors."""
    tv = mobilenetv2("torchvision", seed=3)
    timm_keys = list(mobilenetv2("timm", seed=3))
    tv_keys = list(tv)
    # Both generators walk the same modules in the same order: rename tv's tensors to timm's.
    assert len(tv_keys) == len(timm_keys)
    timm = {tk: tv[vk] for vk, tk in zip(tv_keys, timm_keys)}
    a, b = _anchor("mobilenetv2"), _anchor("mobilenetv2")
    save_file(tv, str(tmp_path / "tv.safetensors"))
    save_file(timm, str(tmp_path / "timm.safetensors"))
    load_pretrained_backbone(a, tmp_path / "tv.safetensors")
    load_pretrained_backbone(b, tmp_path / "timm.safetensors")
    sa, sb = a.stem.state_dict(), b.stem.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for l in range(a.num_layers - 1):                    # every backbone node; the R-ASPP is random
        x, y = a.streams[1][l].state_dict(), b.streams[1][l].state_dict()
        assert all(torch.equal(x[k], y[k]) for k in x if not k.endswith("num_batches_tracked"))


def test_errors_name_the_first_missing_or_misshaped_key(tmp_path):
    src = torchvision_resnet(18)
    missing = dict(src)
    del missing["layer2.0.downsample.0.weight"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    anchor = _anchor("resnet", 18)
    before = {k: v.clone() for k, v in anchor.state_dict().items()}
    with pytest.raises(ValidationError, match=r"key 'layer2\.0\.downsample\.0\.weight' is missing"):
        load_pretrained_backbone(anchor, tmp_path / "missing.safetensors")
    assert all(torch.equal(before[k], v) for k, v in anchor.state_dict().items())   # nothing changed
    # A width-0.125 preset cannot take width-1.0 weights: the first key's shape is named.
    save_file(src, str(tmp_path / "r18.safetensors"))
    with pytest.raises(ValidationError, match=r"key 'conv1\.weight' has shape \[64, 3, 7, 7\], expected \[8, 3, 7, 7\]"):
        load_pretrained_backbone(_anchor("resnet", 18, width=0.125), tmp_path / "r18.safetensors")
    # A ResNet-34 file for a ResNet-18 preset: the first block it has no node for.
    save_file(torchvision_resnet(34), str(tmp_path / "r34.safetensors"))
    with pytest.raises(ValidationError, match=r"key 'layer1\.2\.[a-z0-9_.]+' has no place"):
        load_pretrained_backbone(anchor, tmp_path / "r34.safetensors")
    # A MobileNetV2 file for a ResNet preset, an unknown layout, a non-file, a pickle with code.
    save_file(mobilenetv2("timm"), str(tmp_path / "mnv2.safetensors"))
    with pytest.raises(ValidationError, match="holds a mobilenetv2"):
        load_pretrained_backbone(anchor, tmp_path / "mnv2.safetensors")
    save_file({"x.weight": torch.zeros(2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ValidationError, match="unknown key layout"):
        load_pretrained_backbone(anchor, tmp_path / "odd.safetensors")
    with pytest.raises(ValidationError, match="no such file"):
        load_pretrained_backbone(anchor, tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValidationError, match="not a readable safetensors"):
        load_pretrained_backbone(anchor, tmp_path / "junk.safetensors")
    torch.save({"conv1.weight": torch.zeros(1), "hook": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValidationError, match="weights_only=True"):
        load_pretrained_backbone(anchor, tmp_path / "evil.pt")


class _Evil:
    """An arbitrary object: weights_only=True refuses to unpickle it."""


def test_module_prefix_is_stripped(tmp_path):
    src = {f"module.{k}": v for k, v in torchvision_resnet(18).items()}
    torch.save(src, tmp_path / "dp.pth")
    anchor = _anchor("resnet", 18)
    load_pretrained_backbone(anchor, tmp_path / "dp.pth")
    assert torch.equal(anchor.streams[1][0].conv1.conv.weight, src["module.layer1.0.conv1.weight"])
