"""ImageNet backbone weights onto every stream of an anchor net (the paper's initialization).

The paper starts all N streams of the anchor from the *same* ImageNet weights (Sec. 3.1,
supplement G): channel k of stream i and channel k of stream j then still mean similar
things after single-task fine-tuning, which is what makes a cross-task edge cheap. This
module maps a classification checkpoint in torchvision's or timm's key layout onto the
shared stem and onto every stream's nodes:

* ResNet-18 / ResNet-34 (torchvision ``resnet18/34``; timm ``resnet18/34`` uses the same
  keys): ``conv1``/``bn1`` -> the stem, ``layer{s}.{b}.conv1|bn1|conv2|bn2|downsample.0|1``
  -> the s-th stage's b-th basic block.
* MobileNetV2 (torchvision ``mobilenet_v2``: ``features.0`` stem, ``features.1..17``
  inverted residuals; timm ``mobilenetv2_100``: ``conv_stem``/``bn1``,
  ``blocks.{stage}.{i}.conv_pw|bn1|conv_dw|bn2|conv_pwl|bn3``).

Classifier layers (``fc``, ``classifier``, torchvision's ``features.18``, timm's
``conv_head``/top-level ``bn2``) are ignored; the R-ASPP and the decoders keep their random
initialization (they are not part of an ImageNet classifier). A BN built without affine
parameters (``affine_last_bn=False``) takes only the running statistics. Any other key
the mapping needs that the file lacks, or that has another shape (e.g. a width multiplier
other than 1.0), is an error naming that key; so is a backbone key the preset has no node
for (a deeper file than the preset).

Files: safetensors, or a torch state dict read with ``weights_only=True`` (no pickled
code runs). A ``module.`` / ``model.`` prefix on every key (DataParallel, Lightning) is
removed first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from dymu_rt.core.errors import ValidationError

BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
_IGNORED_PREFIXES = ("fc.", "classifier.", "features.18.", "conv_head.", "bn2.", "global_pool.")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from a safetensors file or a torch state dict (weights_only)."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"--init pretrained:{path}: no such file; expected ImageNet backbone weights "
                              "(safetensors, or a torch state dict)")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            d = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValidationError(f"--init pretrained:{path}: not a readable safetensors file ({e})") from None
    else:
        try:
            d = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is the file's fault
            raise ValidationError(f"--init pretrained:{path}: not a torch state dict loadable with "
                                  f"weights_only=True ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
        if isinstance(d, dict) and "state_dict" in d and isinstance(d["state_dict"], dict):
            d = d["state_dict"]
        if not isinstance(d, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in d.items()):
            raise ValidationError(f"--init pretrained:{path}: expected a flat dict of name -> tensor")
    for prefix in ("module.", "model."):
        if d and all(k.startswith(prefix) for k in d):
            d = {k[len(prefix):]: v for k, v in d.items()}
    return d


def _conv_bn(src_conv: str, src_bn: str, dst: str, affine: bool = True) -> list[tuple[str, str]]:
    """Conv + BN pairs; a BN without affine parameters takes the statistics only (its γ/β
    keys map to None: known, deliberately not used)."""
    pairs = [(f"{src_conv}.weight", f"{dst}.conv.weight")]
    return pairs + [(f"{src_bn}.{f}", f"{dst}.bn.{f}" if affine or f.startswith("running") else None)
                    for f in BN_FIELDS]


def _resnet_pairs(anchor, stem_dst: str, node_dst) -> list[tuple[str, str]]:
    spec = anchor.backbone_spec
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[spec.depth]
    pairs = _conv_bn("conv1", "bn1", stem_dst)
    node = 0
    for s, n in enumerate(blocks, start=1):
        for b in range(n):
            dst = node_dst(node)
            src = f"layer{s}.{b}"
            pairs += _conv_bn(f"{src}.conv1", f"{src}.bn1", f"{dst}.conv1")
            pairs += _conv_bn(f"{src}.conv2", f"{src}.bn2", f"{dst}.conv2")
            if anchor.streams[0][node + anchor_node_offset(anchor)].downsample is not None:
                pairs += _conv_bn(f"{src}.downsample.0", f"{src}.downsample.1", f"{dst}.downsample")
            node += 1
    return pairs


_MNV2_STAGES = (1, 2, 3, 4, 3, 3, 1)


def _mnv2_pairs(anchor, stem_dst: str, node_dst, layout: str) -> list[tuple[str, str]]:
    affine_last = anchor.backbone_spec.affine_last_bn
    if layout == "torchvision":
        pairs = _conv_bn("features.0.0", "features.0.1", stem_dst)
    else:
        pairs = _conv_bn("conv_stem", "bn1", stem_dst)
    node = 0
    for stage, n in enumerate(_MNV2_STAGES):
        for i in range(n):
            dst = f"{node_dst(node)}.block"
            if layout == "torchvision":
                src = f"features.{node + 1}.conv"
                if node == 0:        # t = 1: depthwise, project
                    pairs += _conv_bn(f"{src}.0.0", f"{src}.0.1", f"{dst}.0")
                    pairs += _conv_bn(f"{src}.1", f"{src}.2", f"{dst}.2", affine_last)
                else:                # expand, depthwise, project
                    pairs += _conv_bn(f"{src}.0.0", f"{src}.0.1", f"{dst}.0")
                    pairs += _conv_bn(f"{src}.1.0", f"{src}.1.1", f"{dst}.2")
                    pairs += _conv_bn(f"{src}.2", f"{src}.3", f"{dst}.4", affine_last)
            else:
                src = f"blocks.{stage}.{i}"
                if node == 0:
                    pairs += _conv_bn(f"{src}.conv_dw", f"{src}.bn1", f"{dst}.0")
                    pairs += _conv_bn(f"{src}.conv_pw", f"{src}.bn2", f"{dst}.2", affine_last)
                else:
                    pairs += _conv_bn(f"{src}.conv_pw", f"{src}.bn1", f"{dst}.0")
                    pairs += _conv_bn(f"{src}.conv_dw", f"{src}.bn2", f"{dst}.2")
                    pairs += _conv_bn(f"{src}.conv_pwl", f"{src}.bn3", f"{dst}.4", affine_last)
            node += 1
    return pairs


def anchor_node_offset(anchor) -> int:
    """1 when each stream has its own stem node (node 0), 0 with a shared stem."""
    return 0 if anchor.stem is not None else 1


def detect_layout(keys) -> Optional[tuple[str, str]]:
    """(kind, layout) of a checkpoint's keys: ("resnet", "torchvision/timm"),
    ("mobilenetv2", "torchvision") or ("mobilenetv2", "timm"); None if unknown."""
    keys = set(keys)
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return "resnet", "torchvision/timm"
    if "features.0.0.weight" in keys and "features.1.conv.0.0.weight" in keys:
        return "mobilenetv2", "torchvision"
    if "conv_stem.weight" in keys and "blocks.0.0.conv_dw.weight" in keys:
        return "mobilenetv2", "timm"
    return None


def mapping(anchor, kind: str, layout: str, stream: int = 0) -> list[tuple[str, Optional[str]]]:
    """(file key, anchor state-dict key) pairs for stream ``stream`` and the stem (None: a
    γ/β the preset's BN has no place for)."""
    off = anchor_node_offset(anchor)
    stem_dst = "stem.conv" if anchor.stem is not None else f"streams.{stream}.0.conv"

    def node_dst(node: int) -> str:
        return f"streams.{stream}.{node + off}"

    if kind == "resnet":
        return _resnet_pairs(anchor, stem_dst, node_dst)
    return _mnv2_pairs(anchor, stem_dst, node_dst, layout)


def load_pretrained_backbone(anchor: nn.Module, path: str | Path) -> dict:
    """Copy ImageNet weights from ``path`` into the stem and every stream of ``anchor``.

    Returns a summary (layout, tensors copied per stream). ValidationError naming the first
    missing / mis-shaped / unexpected key, before anything in ``anchor`` is changed.
    """
    spec = anchor.backbone_spec
    what = f"--init pretrained:{path}"
    if spec.kind not in ("resnet", "mobilenetv2"):
        raise ValidationError(f"{what}: backbone '{spec.kind}' has no ImageNet layout here; expected a preset "
                              "with a ResNet-18/34 or MobileNetV2 backbone")
    if spec.kind == "resnet" and spec.stem != "imagenet":
        raise ValidationError(f"{what}: the preset's ResNet has a 3x3 CIFAR stem; ImageNet weights need the 7x7 one")
    src = read_weights(path)
    found = detect_layout(src)
    if found is None:
        raise ValidationError(f"{what}: unknown key layout (first keys: {', '.join(list(src)[:3])}); expected "
                              "torchvision's or timm's ResNet-18/34 or MobileNetV2 state dict")
    kind, layout = found
    expected_name = f"ResNet-{spec.depth}" if spec.kind == "resnet" else "MobileNetV2"
    if kind != spec.kind:
        raise ValidationError(f"{what}: the file holds a {kind} ({layout}) state dict; the preset's backbone is "
                              f"{expected_name}")
    dst_state = anchor.state_dict()
    known = mapping(anchor, kind, layout)
    pairs = [(s, d) for s, d in known if d is not None]
    for s, d in pairs:
        if s not in src:
            raise ValidationError(f"{what}: key '{s}' is missing (needed for {d}; expected the {layout} "
                                  f"{expected_name} layout)")
        if tuple(src[s].shape) != tuple(dst_state[d].shape):
            raise ValidationError(f"{what}: key '{s}' has shape {list(src[s].shape)}, expected "
                                  f"{list(dst_state[d].shape)} for {d} (width multiplier "
                                  f"{spec.width_mult:g}; ImageNet weights fit width 1.0)")
    used = {s for s, _ in known}
    for k in src:
        if k in used or k.endswith("num_batches_tracked") or k.startswith(_IGNORED_PREFIXES):
            continue
        raise ValidationError(f"{what}: key '{k}' has no place in the preset's {expected_name} (a deeper or "
                              "different backbone?)")
    new = {}
    for stream in range(anchor.num_tasks):
        for s, d in mapping(anchor, kind, layout, stream):
            if d is not None:
                new[d] = src[s].to(dst_state[d].dtype)
    anchor.load_state_dict(new, strict=False)
    return {"layout": f"{kind} ({layout})", "tensors_per_stream": len(pairs), "streams": anchor.num_tasks}
