"""Shared test configuration: single-threaded torch, tiny presets."""

import dataclasses

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_user_cache(tmp_path_factory, monkeypatch):
    """Latency tables of read-only bundles go to $XDG_CACHE_HOME/dymu-rt: tests use their own
    (subprocesses inherit it), never the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture(scope="session")
def tiny_preset():
    """synth-nyu at 32x32 with the narrowest widths (shared stem, R-ASPP, light decoder): seconds to run."""
    from dymu_rt.models.backbones import BackboneSpec
    from dymu_rt.models.heads import HeadSpec
    from dymu_rt.models.presets import get_preset

    base = get_preset("synth-nyu")
    return dataclasses.replace(
        base, name="synth-nyu", input_size=(32, 32),
        backbone=BackboneSpec("resnet", 18, 0.125, 8, "imagenet", shared_stem=True, raspp_channels=8),
        head=HeadSpec("light", 0, (), 8, 8),
    ).with_train(anchor_steps=4, edge_steps=4, weight_steps=3, anchor_batch=4,
                 controller_batch=4, decay_every=2, affinity_samples=4)
