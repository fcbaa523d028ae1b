"""The DataLoader input pipeline: one stream of batches whatever the workers, ranks or resume point."""

from __future__ import annotations

import pytest
import torch

from dymu_rt.training.loader import BatchStream, StepBatchSampler


@pytest.fixture(scope="module")
def dataset(tiny_preset):
    from dymu_rt.data import make_dataset

    return make_dataset("synth", "train", size=tiny_preset.input_size,
                        tasks=[t.name for t in tiny_preset.tasks], augment=True, n=10, seed=5)


def _take(stream, k):
    with stream:
        return [next(stream) for _ in range(k)]


def _equal(a: dict, b: dict) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


def test_worker_processes_give_the_batches_of_the_single_process_loader(dataset):
    ref = _take(BatchStream(dataset, 4, seed=1), 6)            # 6 steps: crosses 2 epochs of 2 batches
    got = _take(BatchStream(dataset, 4, seed=1, workers=2), 6)
    assert all(_equal(a, b) for a, b in zip(ref, got))
    assert not _equal(ref[0], ref[2])                           # epochs reshuffle and re-augment


def test_a_resumed_stream_continues_with_the_batches_of_an_unstopped_one(dataset):
    ref = _take(BatchStream(dataset, 4, seed=1), 7)
    tail = _take(BatchStream(dataset, 4, seed=1, start_step=4, workers=1), 3)
    assert all(_equal(a, b) for a, b in zip(ref[4:], tail))


def test_ranks_get_disjoint_contiguous_slices_of_every_global_batch(dataset):
    ref = _take(BatchStream(dataset, 4, seed=1), 3)
    r0 = _take(BatchStream(dataset, 4, seed=1, rank=0, world_size=2), 3)
    r1 = _take(BatchStream(dataset, 4, seed=1, rank=1, world_size=2, workers=1), 3)
    for full, a, b in zip(ref, r0, r1):
        joined = torch.utils.data.default_collate([a, b])     # [2, 2, ...]
        assert torch.equal(full["image"], joined["image"].flatten(0, 1))
        assert torch.equal(full["targets"]["depth"], joined["targets"]["depth"].flatten(0, 1))
    s0, s1 = StepBatchSampler(10, 4, 1, rank=0, world_size=2), StepBatchSampler(10, 4, 1, rank=1, world_size=2)
    for a, b in zip(iter(s0), iter(s1)):
        assert not {i for i, _ in a} & {i for i, _ in b}
        break


def test_augmentation_does_not_depend_on_the_trainers_rng(dataset):
    a = _take(BatchStream(dataset, 4, seed=1), 2)
    torch.manual_seed(123)
    stream = BatchStream(dataset, 4, seed=1)
    first = next(stream)
    torch.rand(1000)                                            # the trainer draws noise between batches
    b = [first, next(stream)]
    stream.close()
    assert all(_equal(x, y) for x, y in zip(a, b))


def test_each_epoch_visits_every_full_batch_once(dataset):
    s = StepBatchSampler(10, 4, seed=2, steps=2)
    seen = [i for batch in s for i, _ in batch]
    assert len(seen) == 8 and len(set(seen)) == 8              # the 2-sample tail is dropped


def test_opening_a_stream_leaves_the_global_rng_alone(tiny_preset):
    """A resumed stage opens its stream after restoring the RNG: the stream must not draw from it."""
    from dymu_rt.training.common import make_split
    from dymu_rt.training.loader import BatchStream

    ds = make_split(tiny_preset, "synth", "train", n=4)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    with BatchStream(ds, 2, seed=0) as stream:
        next(stream)
    assert torch.equal(before, torch.get_rng_state())
