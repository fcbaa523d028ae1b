"""Shared test configuration: single-threaded torch, tiny presets."""

import dataclasses

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_preset():
    """synth-nyu at 32x32 with the narrowest widths: same code, seconds to run."""
    from dymu_rt.models.backbones import BackboneSpec
    from dymu_rt.models.heads import HeadSpec
    from dymu_rt.models.presets import get_preset

    base = get_preset("synth-nyu")
    return dataclasses.replace(
        base, name="synth-nyu", input_size=(32, 32),
        backbone=BackboneSpec("resnet", 18, 0.125, 8, "imagenet"),
        head=HeadSpec("deeplab", 8, (2,), 8, 8),
    ).with_train(anchor_steps=4, edge_steps=4, weight_steps=3, anchor_batch=4,
                 controller_batch=4, decay_every=2, affinity_samples=4)
