"""The router's model.py, run in-process against a stand-in for triton_python_backend_utils
(tests/serve/triton_stub.py): same answers as Runtime.infer, errors as Triton error responses."""

import numpy as np
import pytest

from triton_stub import InferenceRequest, Tensor, load_router

from dymu_rt.core.preference import make_preference, sample_preferences
from dymu_rt.core.errors import ValidationError
from dymu_rt.runtime import Runtime


def _request(image, r, c):
    return InferenceRequest(inputs=[Tensor("image", np.asarray(image, np.float32)),
                                    Tensor("r", np.asarray(r, np.float32)),
                                    Tensor("c", np.asarray(c, np.float32).reshape(-1, 1))])


def _outputs(response):
    assert not response.has_error(), response.error().message()
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


def _preferences(n_tasks, points, k, seed):
    """k preferences as float32 values: grid points, random simplex points, corners."""
    rng = np.random.default_rng(seed)
    prefs = [(p["r"], p["c"]) for p in (points[0], points[len(points) // 2], points[-1])]
    prefs += [(s.r, float(rng.uniform(0, 1))) for s in sample_preferences(n_tasks, k - len(prefs) - 2, rng)]
    prefs += [((1.0, 0.0, 0.0), 0.0), ((0.0, 0.0, 1.0), 1.0)]
    return [(np.asarray(r, np.float32), np.float32(c)) for r, c in prefs]


def _check_against_runtime(rt, prefs, images, rows):
    worst = 0.0
    stats = []
    for (r, c), x, row in zip(prefs, images, rows):
        rt.set_preference([float(v) for v in r], float(c))
        want = rt.infer(x[None])
        s = rt.stats()
        stats.append(s)
        for task, value in want.items():
            assert row[task].shape == value[0].shape
            # relative to the output's scale: two float32 paths (the Triton model embeds its
            # weights, the Runtime binds the shared ones and derives raw conv weights W'/s0,
            # schema 3), so rounding grows with the magnitude of the outputs
            scale = max(1.0, float(np.abs(value[0]).max()))
            worst = max(worst, float(np.abs(row[task] - value[0]).max()) / scale)
        assert row["topology"][0].decode() == s["topology"]
        assert row["binding"][0].decode() == s["binding"]
        at = s["grid_point"] or {"r": s["r"], "c": s["c"]}
        np.testing.assert_allclose(row["grid_point"], [*at["r"], at["c"]], rtol=0, atol=1e-7)
        assert row["params"][0] == s["params"]
        assert row["gmacs"][0] == pytest.approx(s["gmacs"], rel=1e-6)
    return worst, stats


def _run(router, bundle, version_images_prefs, seed=0):
    """20 preferences: 12 single-image requests in one execute call, then one request whose
    8 images carry 8 different preferences; returns per-image rows in preference order."""
    prefs, images = version_images_prefs
    singles = [_request(images[i:i + 1], prefs[i][0][None], [prefs[i][1]]) for i in range(12)]
    rows = [{k: v[0] for k, v in _outputs(resp).items()} for resp in router.execute(singles)]
    mixed = _request(images[12:], np.stack([r for r, _ in prefs[12:]]), [c for _, c in prefs[12:]])
    (resp,) = router.execute([mixed])
    out = _outputs(resp)
    rows += [{k: v[j] for k, v in out.items()} for j in range(len(prefs) - 12)]
    return rows


@pytest.mark.parametrize("which", ["shipped", "pruned"])
def test_router_matches_runtime_for_20_preferences(which, shipped_bundle, shipped_repo, small_bundle, tmp_path):
    from dymu_rt.bundle.layout import read_manifest
    from dymu_rt.serve.triton import export_triton

    if which == "shipped":
        bundle, repo = shipped_bundle, shipped_repo
    else:                    # 3 topologies: most preferences fall back to the nearest grid point
        bundle, repo = small_bundle, tmp_path / "repo"
        export_triton(bundle, repo, max_batch=8)
    m = read_manifest(bundle).to_dict()
    router, server, _ = load_router(repo, 1)
    prefs = _preferences(len(m["tasks"]), m["points"], 20, seed=1)
    images = np.random.default_rng(2).random((20, 3, 64, 64), dtype=np.float32)
    rows = _run(router, bundle, (prefs, images))
    assert len(rows) == 20

    rt = Runtime.open(bundle, cache_engines=False)
    worst, stats = _check_against_runtime(rt, prefs, images, rows)
    rt.close()
    assert worst <= 1e-5, f"router differs from Runtime.infer by {worst:.2e} (relative to the output's scale)"
    bindings = {s["binding"] for s in stats}
    topologies = {s["topology"] for s in stats[12:]}
    assert len(topologies) >= 2, "the mixed batch should span several topologies"
    if which == "pruned":
        assert bindings == {"exact", "nearest-grid"}
    # the 8-image request ran as one call per topology, each batching several preferences
    topo_calls = [(name, batch) for name, _, batch in server.calls if name.startswith("dymu_topo_")]
    assert sum(b for _, b in topo_calls[-len(topologies):]) == 8
    assert all(v == 1 for _, v, _ in server.calls), "every BLS call names the router's own version"
    print(f"{which}: max |router - Runtime.infer| = {worst:.2e}; bindings {sorted(bindings)}")


def test_mixed_preferences_share_one_topology_call(shipped_repo, shipped_bundle):
    """Two images, two preferences, same topology: one BLS call of batch 2 (dynamic batching
    across preferences is what the batched scale/shift inputs are for)."""
    from dymu_rt.bundle.layout import read_manifest

    m = read_manifest(shipped_bundle).to_dict()
    tid = max(m["topologies"], key=lambda t: m["topologies"][t]["n_points"])
    pts = [p for p in m["points"] if p["topology"] == tid][:2]
    router, server, _ = load_router(shipped_repo, 1)
    images = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    (resp,) = router.execute([_request(images, [p["r"] for p in pts], [p["c"] for p in pts])])
    out = _outputs(resp)
    assert [t.decode() for t in out["topology"][:, 0]] == [tid, tid]
    assert [c for c in server.calls if c[0].startswith("dymu_topo_")] == [(f"dymu_topo_{tid}", 1, 2)]
    # the two rows got different BN inputs: outputs differ from running both at one preference
    (same,) = router.execute([_request(images, [pts[0]["r"]] * 2, [pts[0]["c"]] * 2)])
    assert not np.allclose(_outputs(same)["depth"][1], out["depth"][1])


@pytest.mark.parametrize("r, c", [
    ([0.5, 0.5, 0.5], 0.5),          # not on the simplex
    ([0.5, 0.5], 0.5),               # wrong number of tasks
    ([1.0, 0.0, 0.0], 1.5),          # c outside [0, 1]
    ([float("nan"), 0.5, 0.5], 0.5),
    ([-0.2, 0.6, 0.6], 0.0),
])
def test_bad_preference_is_a_triton_error_response(shipped_repo, r, c):
    router, _, _ = load_router(shipped_repo, 1)
    images = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    good = _request(images, [[0.2, 0.3, 0.5]], [0.5])
    bad = _request(images, [r], [c])
    responses = router.execute([good, bad, good])
    assert not responses[0].has_error() and not responses[2].has_error()
    assert responses[1].has_error()
    message = responses[1].error().message()
    assert message.startswith("error: ") and "\n" not in message
    if len(r) == 3:         # the same words the CLI prints for this preference (one source)
        with pytest.raises(ValidationError) as e:
            make_preference(r, c, 3)
        assert str(e.value) in message
    assert responses[1].output_tensors() == []


def test_bad_image_is_a_triton_error_response(shipped_repo):
    router, _, _ = load_router(shipped_repo, 1)
    (resp,) = router.execute([_request(np.zeros((1, 3, 32, 32), np.float32), [[0.2, 0.3, 0.5]], [0.5])])
    assert resp.has_error() and "[1, 3, 64, 64]" in resp.error().message()


def test_failed_bls_call_is_an_error_response_not_a_crash(shipped_repo):
    router, server, _ = load_router(shipped_repo, 1)
    server.configs.pop("dymu_weight_hypernet")          # as if the model failed to load
    images = np.zeros((1, 3, 64, 64), np.float32)
    (resp,) = router.execute([_request(images, [[0.2, 0.3, 0.5]], [0.5])])
    assert resp.has_error() and "dymu_weight_hypernet" in resp.error().message()


def test_router_over_gpu_instances_asks_for_host_memory(small_bundle, tmp_path):
    """--backend tensorrt: topology models on KIND_GPU answer in GPU memory unless the BLS call
    asks for host memory (the stand-in enforces this as Triton does); the router asks."""
    from dymu_rt.serve.triton import export_triton

    repo = tmp_path / "repo"
    export_triton(small_bundle, repo, backend="tensorrt", max_batch=4)
    router, server, stub = load_router(repo, 1)
    images = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    request = _request(images, [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], [0.5, 0.1])
    out = _outputs(router.execute([request])[0])
    assert out["depth"].shape == (2, 1, 64, 64)
    router.bls_kwargs = {}                      # without it the GPU output cannot reach numpy: an
    (resp,) = router.execute([request])         # error response, not a crash
    assert resp.has_error() and "stored in GPU" in resp.error().message()
