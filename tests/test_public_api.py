"""The small public API of ``dymu_rt`` (issue 26): each name resolves to its one home, and
importing the package (or the deploy-side names) pulls in no torch."""

import subprocess
import sys

import dymu_rt


def test_public_names_resolve_to_their_homes():
    from dymu_rt.bundle.manifest import read_manifest
    from dymu_rt.methods import build_bundle
    from dymu_rt.core.preference import Preference
    from dymu_rt.runtime.runtime import Runtime

    assert dymu_rt.Runtime is Runtime and dymu_rt.Preference is Preference
    from dymu_rt.app.train import train

    assert dymu_rt.read_manifest is read_manifest and dymu_rt.build_bundle is build_bundle
    assert dymu_rt.train is train
    assert set(dymu_rt.__all__) == {"__version__", "Runtime", "Preference", "read_manifest", "build_bundle", "train"}
    assert "Runtime" in dir(dymu_rt)


def test_unknown_name_is_an_attribute_error():
    try:
        dymu_rt.NotAThing
    except AttributeError as e:
        assert "NotAThing" in str(e)
    else:
        raise AssertionError("dymu_rt.NotAThing resolved")


def test_deploy_side_public_names_import_no_torch():
    code = ("import sys; import dymu_rt; dymu_rt.Runtime; dymu_rt.Preference; dymu_rt.read_manifest; "
            "bad = [m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_train_is_the_function_even_after_the_train_wing_is_imported():
    """The clash issue 26 resolved: the train wing is ``dymu_rt.training``; there is no
    ``dymu_rt.train`` subpackage whose import would rebind ``dymu_rt.train`` to a module."""
    import importlib

    import dymu_rt.training.pipeline  # noqa: F401  (binds dymu_rt.training, and must leave dymu_rt.train alone)
    from dymu_rt import train

    assert callable(train) and train is dymu_rt.train and train.__module__ == "dymu_rt.app.train"
    try:
        importlib.import_module("dymu_rt.train")
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("a dymu_rt.train module exists and shadows the public function")


def test_public_train_trains_like_the_pipeline_and_returns_the_run(tmp_path, tiny_preset):
    """``dymu_rt.train(out, stages=...)`` resumes a run folder and trains it exactly as the
    stage pipeline does (same weights), and hands back the run. ~3 s on one thread."""
    import torch

    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.pipeline import train as train_stages

    ref = RunDir(tmp_path / "ref")
    ref.init(tiny_preset, data="synth")
    train_stages(ref, "anchor", n_train=8, n_val=4, progress=False)
    RunDir(tmp_path / "api").init(tiny_preset, data="synth")
    run = dymu_rt.train(tmp_path / "api", stages="anchor", n_train=8, n_val=4, threads=1, device="cpu")
    assert isinstance(run, RunDir) and run.path == tmp_path / "api"
    assert run.stage_done("anchor") and not run.stage_done("edge")
    want, got = ref.load_anchor().state_dict(), run.load_anchor().state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_public_train_refuses_a_bad_option_before_writing(tmp_path):
    """One ValidationError line naming the keyword (not a command-line flag), and no run folder."""
    from dymu_rt.core.errors import ValidationError

    out = tmp_path / "run"
    for kwargs, named in (({"overrides": {"anchor_steps": 0}}, "overrides['anchor_steps'] 0"),
                          ({"threads": 0}, "threads = 0"), ({"method": "nope"}, "'nope'")):
        try:
            dymu_rt.train(out, preset="synth-nyu", **kwargs)
        except ValidationError as e:
            assert named in str(e) and "\n" not in str(e), str(e)
        else:
            raise AssertionError(f"dymu_rt.train accepted {kwargs}")
        assert not out.exists()
