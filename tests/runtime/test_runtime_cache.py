"""Engine LRU: cached switches cost no load; eviction under a byte budget."""

from bundle_fixture import read_manifest
from dymu_rt.runtime import Runtime
from dymu_rt.runtime.cache import EngineCache


def _points_by_topology(m):
    seen = {}
    for p in m["points"]:
        seen.setdefault(p["topology"], p)
    return list(seen.values())


def test_switch_to_cached_topology_costs_no_load(bundle):
    m = read_manifest(bundle)
    a, b = _points_by_topology(m)[:2]
    rt = Runtime.open(bundle, second_tier="off")            # the instant engines' LRU alone
    rt.set_preference(a["r"], a["c"])
    rt.set_preference(b["r"], b["c"])
    assert rt.cache.stats()["loads"] == 2
    for _ in range(3):
        rt.set_preference(a["r"], a["c"])
        rt.set_preference(b["r"], b["c"])
    s = rt.cache.stats()
    assert s["loads"] == 2 and s["hits"] == 6 and s["evictions"] == 0


def test_lru_eviction_under_budget(bundle):
    m = read_manifest(bundle)
    pts = _points_by_topology(m)[:3]
    rt = Runtime.open(bundle, second_tier="off")            # the instant engines' LRU alone
    rt.set_preference(pts[0]["r"], pts[0]["c"])
    one = rt.cache.bytes()
    # Room for two engines of this size (fixture topologies are of similar size).
    rt.cache.budget_bytes = int(2.2 * one)
    rt.set_preference(pts[1]["r"], pts[1]["c"])
    rt.set_preference(pts[0]["r"], pts[0]["c"])            # 0 becomes most recently used
    rt.set_preference(pts[2]["r"], pts[2]["c"])            # evicts 1, the least recently used
    cached = rt.cache.topologies()
    assert pts[1]["topology"] not in cached
    assert pts[0]["topology"] in cached and pts[2]["topology"] in cached
    assert rt.cache.bytes() <= rt.cache.budget_bytes
    assert rt.cache.stats()["evictions"] >= 1
    loads = rt.cache.stats()["loads"]
    rt.set_preference(pts[1]["r"], pts[1]["c"])            # evicted: loads again
    assert rt.cache.stats()["loads"] == loads + 1


class _Fake:
    def __init__(self, size):
        self.size, self.closed = size, False

    def memory_bytes(self):
        return self.size

    def close(self):
        self.closed = True


def test_cache_keeps_a_single_oversized_engine():
    engines = {"a": _Fake(10), "b": _Fake(100)}
    cache = EngineCache(50, lambda t: engines[t])
    cache.get("a")
    assert cache.get("b") is engines["b"]                  # larger than the budget: still served
    assert engines["a"].closed and cache.topologies() == ["b"]


def test_profile_budget_sets_cache(bundle):
    rt = Runtime.open(bundle)
    assert rt.cache.budget_bytes == rt.profile.engine_cache_mb * 2**20


def test_pinned_engines_are_never_evicted():
    engines = {t: _Fake(10) for t in "abc"}
    pinned = {"a"}
    cache = EngineCache(15, lambda t: engines[t], pinned=lambda: pinned)
    cache.get("a")
    cache.get("b")                                         # over budget, but a is pinned
    assert not engines["a"].closed and cache.topologies() == ["a", "b"]
    pinned = set()
    cache._pinned = lambda: pinned
    cache.get("c")                                         # nothing pinned: back within budget
    assert engines["a"].closed and engines["b"].closed and cache.topologies() == ["c"]


def test_ort_engine_size_counts_the_weights(bundle):
    import onnx

    from dymu_rt.backends.onnxruntime import graph_weight_bytes

    m = read_manifest(bundle)
    rt = Runtime.open(bundle)
    tid = next(iter(m["topologies"]))
    graph = bundle / m["topologies"][tid]["file"]
    # Move the graph's tensors to external data, as schema 2 bundles do (graphs/weights.bin).
    model = onnx.load(str(graph))
    onnx.save(model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    ext = (graph.parent / "weights.bin").stat().st_size
    assert ext > graph.stat().st_size
    assert graph_weight_bytes(graph) == graph.stat().st_size + ext
    assert rt.cache.get(tid).memory_bytes() == 2 * (graph.stat().st_size + ext)


def test_engine_memory_of_other_backends_is_their_own_report(bundle):
    from inplace_fake import inplace_runtime

    rt, _ = inplace_runtime(bundle)
    rt.set_preference([1, 0, 0], 0)
    assert rt.cache.bytes() == 1000
