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
    assert dymu_rt.read_manifest is read_manifest and dymu_rt.build_bundle is build_bundle
    assert set(dymu_rt.__all__) == {"__version__", "Runtime", "Preference", "read_manifest", "build_bundle"}
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
