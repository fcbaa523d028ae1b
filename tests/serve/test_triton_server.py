"""End to end against a real ``tritonserver`` (the nvidia-pytriton wheel's, CPU, Python backend).

One server per module (explicit model control, every model loaded at start) serves a
``dymu-rt export triton --backend python`` repository of the shipped bundle pruned to 3
topologies (the smallest bundle that still has exact and nearest-grid preferences and a mixed
batch over several topologies). Every answer is compared with the in-process
``Runtime.infer`` of the same bundle. The tests run in file order: the reload test re-exports
a rebuilt bundle into the live repository (the later tests use the new version) and the last
one kills the server mid-request and starts a new one on the same repository.

Cost: about 40-60 s on 2 cores (server start ~10 s twice, 400 concurrent requests, reload).
Skipped, with the reason, where no server binary can run (see tests/serve/tritonserver.py).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from serve_helpers import prune_bundle
from tritonserver import TritonServer, find_server

from dymu_rt.core.preference import make_preference, sample_preferences
from dymu_rt.core.errors import ValidationError

FILES, WHY = find_server()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(FILES is None, reason=f"no Triton server here: {WHY}")]

TASK_OUTPUTS = ("semseg", "normals", "depth")
#: |server - Runtime.infer| relative to the output's scale, max(1, max |Runtime.infer|): two
#: float32 paths (the served graph embeds the raw conv weights, the Runtime binds shared ones)
TOL = 1e-5


class Reference:
    """The in-process Runtime of one bundle: what the server must answer."""

    def __init__(self, bundle) -> None:
        from dymu_rt.runtime import Runtime

        self.rt = Runtime.open(bundle, cache_engines=False)

    def __call__(self, r, c, image) -> tuple[dict, dict]:
        self.rt.set_preference([float(v) for v in r], float(c))
        return {k: v[0] for k, v in self.rt.infer(image[None]).items()}, self.rt.stats()

    def batch(self, r, c, images) -> tuple[dict, dict]:
        """Outputs [B, ...] of ``images`` [B, 3, H, W] at one preference."""
        self.rt.set_preference([float(v) for v in r], float(c))
        return self.rt.infer(images), self.rt.stats()

    def close(self) -> None:
        self.rt.close()


@pytest.fixture(scope="module")
def state(tmp_path_factory, shipped_bundle):
    """{server, repo, bundle, ref}: the module's server and what it serves now."""
    from dymu_rt.serve.triton import export_triton

    tmp = tmp_path_factory.mktemp("triton-server")
    bundle = prune_bundle(shipped_bundle, tmp / "bundle", 3)
    repo = tmp / "repo"
    export_triton(bundle, repo, backend="python", max_batch=8)
    server = TritonServer(repo, model_control="explicit", log=tmp / "server.log")
    server.start()
    s = {"server": server, "repo": repo, "bundle": bundle, "ref": {1: Reference(bundle)}, "tmp": tmp}
    yield s
    s["server"].stop()
    s["server"].cleanup()
    for ref in s["ref"].values():
        ref.close()


# -- clients ---------------------------------------------------------------------------------

def _client(protocol, server):
    if protocol == "http":
        import tritonclient.http as mod

        return mod, mod.InferenceServerClient(server.http_url, connection_timeout=120, network_timeout=120)
    import tritonclient.grpc as mod

    return mod, mod.InferenceServerClient(server.grpc_url)


def _inputs(mod, image, r, c, dtypes=("FP32", "FP32", "FP32")):
    arrays = {"image": np.asarray(image), "r": np.asarray(r), "c": np.asarray(c)}
    out = []
    for (name, a), dtype in zip(arrays.items(), dtypes):
        t = mod.InferInput(name, list(a.shape), dtype)
        t.set_data_from_numpy(a)
        out.append(t)
    return out


def _infer(protocol, server, image, r, c, client=None):
    """(outputs by name, model version that answered) of one request to the router."""
    mod, cl = client or _client(protocol, server)
    kwargs = {} if protocol == "http" else {"client_timeout": 120}
    res = cl.infer("dymu", _inputs(mod, image, np.asarray(r, np.float32), np.asarray(c, np.float32)), **kwargs)
    resp = res.get_response()
    version = resp["model_version"] if protocol == "http" else resp.model_version
    names = [*TASK_OUTPUTS, "topology", "binding", "grid_point", "params", "gmacs"]
    return {n: res.as_numpy(n) for n in names}, int(version)


def _error_of(protocol, server, image, r, c, dtypes=("FP32", "FP32", "FP32")):
    from tritonclient.utils import InferenceServerException

    mod, cl = _client(protocol, server)
    with pytest.raises(InferenceServerException) as e:
        cl.infer("dymu", _inputs(mod, image, r, c, dtypes))
    return e.value.message()


def _worst(got: dict, row: int, want: dict, stats: dict) -> float:
    """Largest scaled difference of one row against the reference; checks the row's route."""
    assert got["topology"][row, 0].decode() == stats["topology"]
    assert got["binding"][row, 0].decode() == stats["binding"]
    at = stats["grid_point"] or {"r": stats["r"], "c": stats["c"]}
    np.testing.assert_allclose(got["grid_point"][row], [*at["r"], at["c"]], rtol=0, atol=1e-7)
    assert got["params"][row, 0] == stats["params"]
    worst = 0.0
    for task, value in want.items():
        assert got[task][row].shape == value.shape
        worst = max(worst, float(np.abs(got[task][row] - value).max()) / max(1.0, float(np.abs(value).max())))
    return worst


def _preferences(k, seed, points):
    """k float32 preferences: 3 grid points, random off-grid simplex points, 2 corners."""
    rng = np.random.default_rng(seed)
    prefs = [(p.r, p.c) for p in (points[0], points[len(points) // 2], points[-1])]
    prefs += [(s.r, float(rng.uniform(0, 1))) for s in sample_preferences(3, k - len(prefs) - 2, rng)]
    prefs += [((1.0, 0.0, 0.0), 0.0), ((0.0, 0.0, 1.0), 1.0)]
    return [(np.asarray(r, np.float32), np.float32(c)) for r, c in prefs]


# -- tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_matches_runtime_for_20_preferences(state, protocol):
    """12 single-image requests, then one request whose 8 images carry 8 preferences."""
    server, ref = state["server"], state["ref"][1]
    prefs = _preferences(20, 1, _points(state))
    images = np.random.default_rng(2).random((20, 3, 64, 64), dtype=np.float32)
    worst, stats = 0.0, []
    client = _client(protocol, server)
    for i in range(12):
        got, version = _infer(protocol, server, images[i:i + 1], prefs[i][0][None], [[prefs[i][1]]], client)
        want, s = ref(*prefs[i], images[i])
        worst = max(worst, _worst(got, 0, want, s))
        stats.append(s)
    got, _ = _infer(protocol, server, images[12:], np.stack([r for r, _ in prefs[12:]]),
                    [[c] for _, c in prefs[12:]], client)
    for j in range(8):
        want, s = ref(*prefs[12 + j], images[12 + j])
        worst = max(worst, _worst(got, j, want, s))
        stats.append(s)
    assert worst <= TOL, f"{protocol}: server differs from Runtime.infer by {worst:.2e}"
    assert {s["binding"] for s in stats} == {"exact", "nearest-grid"}
    assert len({s["topology"] for s in stats[12:]}) >= 2, "the mixed batch should span several topologies"
    print(f"\n{protocol}: 20 preferences, max |server - Runtime.infer| / scale = {worst:.2e}")


def _points(state):
    from dymu_rt.bundle.layout import read_manifest

    return read_manifest(state["bundle"]).points


def test_8_clients_x_50_requests(state):
    """8 threads (4 HTTP, 4 gRPC), 50 requests each: a random preference (drawn from 40 random
    ones, a quarter of them grid points, so that the reference runs each preference once) and
    an image of its own; every answer checked against the Runtime afterwards: none lost, none
    mixed up."""
    server, ref = state["server"], state["ref"][1]
    points = _points(state)
    clients, per = 8, 50
    rng = np.random.default_rng(7)
    pool = []
    for i in range(40):
        if i % 4 == 0:                                       # a grid point
            p = points[int(rng.integers(len(points)))]
            pool.append((np.asarray(p.r, np.float32), np.float32(p.c)))
        else:
            r = rng.dirichlet(np.ones(3)).astype(np.float32)
            r[-1] = max(np.float32(0.0), np.float32(1.0) - r[0] - r[1])
            pool.append((r, np.float32(rng.uniform(0, 1))))
    work = [[(int(rng.integers(len(pool))), rng.random((3, 64, 64), dtype=np.float32)) for _ in range(per)]
            for _ in range(clients)]
    answers = [[None] * per for _ in range(clients)]
    errors = []

    def run(k):
        protocol = "http" if k % 2 == 0 else "grpc"
        client = _client(protocol, server)
        for i, (j, image) in enumerate(work[k]):
            r, c = pool[j]
            try:
                answers[k][i] = _infer(protocol, server, image[None], r[None], [[c]], client)[0]
            except Exception as e:   # recorded, not raised: the test reports every lost request
                errors.append(f"client {k} request {i}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert not errors, errors[:3]
    worst, n = 0.0, 0
    for j, (r, c) in enumerate(pool):              # the Runtime at each preference once, all its images
        mine = [(k, i) for k in range(clients) for i in range(per) if work[k][i][0] == j]
        if not mine:
            continue
        want, s = ref.batch(r, c, np.stack([work[k][i][1] for k, i in mine]))
        for row, (k, i) in enumerate(mine):
            worst = max(worst, _worst(answers[k][i], 0, {t: v[row] for t, v in want.items()}, s))
            n += 1
    assert n == clients * per and worst <= TOL, f"worst {worst:.2e} over {n} answers"
    _, cl = _client("http", server)
    stats = {m["name"]: m["inference_stats"]["success"]["count"]
             for m in cl.get_inference_statistics()["model_stats"] if m["name"] == "dymu"}
    print(f"\n{n} requests from {clients} clients in {wall:.1f} s ({n / wall:.1f} req/s), all equal to "
          f"Runtime.infer (max scaled diff {worst:.2e}); router success count {stats}")


BAD_PREFERENCES = [([0.5, 0.5, 0.5], 0.5), ([1.0, 0.0, 0.0], 1.5), ([float("nan"), 0.5, 0.5], 0.5),
                   ([-0.2, 0.6, 0.6], 0.0)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_errors_then_next_request_served(state, protocol):
    """Bad preferences: a Triton error carrying the CLI's message; malformed requests (wrong
    dims, dtype, missing input, unknown model): Triton's own error; the server then answers
    the next good request correctly."""
    server, ref = state["server"], state["ref"][1]
    image = np.random.default_rng(3).random((1, 3, 64, 64), dtype=np.float32)
    good = (np.asarray([0.2, 0.3, 0.5], np.float32), np.float32(0.4))

    def still_serves():
        got, _ = _infer(protocol, server, image, good[0][None], [[good[1]]])
        want, s = ref(*good, image[0])
        assert _worst(got, 0, want, s) <= TOL

    for r, c in BAD_PREFERENCES:
        with pytest.raises(ValidationError) as cli:
            make_preference(r, c, 3)
        message = _error_of(protocol, server, image, np.asarray([r], np.float32), np.asarray([[c]], np.float32))
        assert f"error: row 0: {cli.value}" in message, message
        still_serves()
    malformed = [
        ("image 32x32", np.zeros((1, 3, 32, 32), np.float32), np.asarray([good[0]]), [[good[1]]], None),
        ("2 task values", image, np.asarray([[0.5, 0.5]], np.float32), [[good[1]]], None),
        ("r as FP64", image, np.asarray([good[0]], np.float64), [[good[1]]], ("FP32", "FP64", "FP32")),
        ("2 images, 1 preference", np.concatenate([image, image]), np.asarray([good[0]]), [[good[1]]], None),
    ]
    for what, img, r, c, dtypes in malformed:
        message = _error_of(protocol, server, img, r, np.asarray(c, np.float32), dtypes or ("FP32",) * 3)
        assert message, what
        still_serves()
    mod, cl = _client(protocol, server)
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException):       # a required input missing
        cl.infer("dymu", _inputs(mod, image, np.asarray([good[0]]), np.asarray([[good[1]]], np.float32))[:2])
    still_serves()


def test_reexport_into_live_repository(state):
    """A rebuilt bundle (2 topologies: other routes for many preferences) exported into the
    served repository while 4 clients keep sending; the models are loaded with explicit model
    control (called models first, the router last). Every request succeeds and equals the
    Runtime of the bundle whose router version answered it; the new version ends up serving."""
    from dymu_rt.serve.triton import export_triton

    server = state["server"]
    new_bundle = prune_bundle(state["bundle"], state["tmp"] / "rebuilt", 2, tag="rebuilt")
    state["ref"][2] = Reference(new_bundle)
    points = _points(state)
    prefs = [(np.asarray(p.r, np.float32), np.float32(p.c)) for p in points[::max(1, len(points) // 6)]]
    prefs += [(np.asarray(r, np.float32), np.float32(c)) for r, c in
              [((0.6, 0.3, 0.1), 0.9), ((0.1, 0.1, 0.8), 0.2), ((0.34, 0.33, 0.33), 0.5)]]
    image = np.random.default_rng(5).random((3, 64, 64), dtype=np.float32)
    seen: list[tuple[int, int, dict]] = []       # (pref index, version, outputs)
    errors: list[str] = []
    stop = threading.Event()

    def run(k):
        protocol = "http" if k % 2 == 0 else "grpc"
        client = _client(protocol, server)
        i = k
        while not stop.is_set():
            j = i % len(prefs)
            try:
                got, version = _infer(protocol, server, image[None], prefs[j][0][None], [[prefs[j][1]]], client)
                seen.append((j, version, got))
            except Exception as e:
                errors.append(f"client {k}: {e}")
            i += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        summary = export_triton(new_bundle, state["repo"], backend="python", max_batch=8)
        assert summary["version"] == 2 and not summary["noop"]
        _, cl = _client("http", server)
        called = [m for m in summary["models"] if m != "dymu" and (state["repo"] / m / "2").is_dir()]
        t0 = time.perf_counter()
        for m in called:                        # the called models first, then the router
            cl.load_model(m)
        cl.load_model("dymu")
        reload_s = time.perf_counter() - t0
        deadline = time.time() + 60
        while not any(v == 2 for _, v, _ in seen[-8:]) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    versions = [v for _, v, _ in seen]
    assert versions.count(1) > 0 and versions.count(2) > 0, f"versions seen {set(versions)}"
    first2 = versions.index(2)
    assert all(v == 2 for v in versions[first2 + 8:]), "after the switch, only the new version answers"
    refs = {(v, j): state["ref"][v](*prefs[j], image) for v in (1, 2) for j in range(len(prefs))}
    worst = 0.0
    for j, version, got in seen:
        worst = max(worst, _worst(got, 0, *refs[version, j]))
    # the rebuilt bundle routes some preferences elsewhere
    differ = sum(refs[1, j][1]["topology"] != refs[2, j][1]["topology"] for j in range(len(prefs)))
    assert differ > 0 and worst <= TOL
    assert cl.is_model_ready("dymu", "2") and not cl.is_model_ready("dymu", "1")
    state["bundle"] = new_bundle
    print(f"\nreload: {len(seen)} requests during the re-export ({versions.count(1)} by v1, "
          f"{versions.count(2)} by v2), 0 errors, max scaled diff {worst:.2e}; loading v2 took {reload_s:.1f} s; "
          f"{differ}/{len(prefs)} preferences route differently in v2")


def test_killed_mid_request_then_restarted(state):
    """SIGKILL the server (and its Python-backend stubs) while a request is in flight; a new
    server on the same repository loads every model and answers like the Runtime."""
    server = state["server"]
    version = max(state["ref"])
    import tritonclient.grpc as G

    cl = G.InferenceServerClient(server.grpc_url)
    image = np.random.default_rng(9).random((8, 3, 64, 64), dtype=np.float32)
    r = np.asarray([[0.3, 0.3, 0.4]] * 8, np.float32)
    results: list = []
    done = threading.Semaphore(0)

    def callback(result, error):
        results.append(error)
        done.release()

    # 64 requests queued; the kill comes right after the first answer, so it lands mid-stream
    # whatever the machine's speed (a fixed sleep let an idle machine finish all of them).
    n = 64
    for _ in range(n):
        cl.async_infer("dymu", _inputs(G, image, r, np.full((8, 1), 0.5, np.float32)), callback)
    assert done.acquire(timeout=60), "the first request got no answer"
    server.kill()
    server.cleanup()
    for _ in range(n - 1):
        assert done.acquire(timeout=60), "a request got no answer at all"
    failed = sum(e is not None for e in results)
    cl.close()
    assert failed > 0, f"the kill should have cut some of the {n} requests in flight"
    restarted = TritonServer(state["repo"], model_control="explicit", log=state["tmp"] / "server2.log")
    state["server"] = restarted
    restarted.start()
    _, cl = _client("http", restarted)
    names = sorted(m["name"] for m in cl.get_model_repository_index() if m.get("state") == "READY")
    assert "dymu" in names and all(cl.is_model_ready(n) for n in names)
    got, v = _infer("http", restarted, image[:1], r[:1], [[0.5]])
    want, s = state["ref"][version](r[0], 0.5, image[0])
    assert v == version and _worst(got, 0, want, s) <= TOL
    print(f"\nSIGKILL with {failed}/{n} requests cut; restarted: {len(names)} models ready, "
          f"v{v} answers like Runtime.infer")
