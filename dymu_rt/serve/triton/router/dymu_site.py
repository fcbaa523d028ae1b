"""Put the serving Python's site-packages on ``sys.path`` before numpy is imported.

Copied by ``dymu-rt export triton`` next to every Python-backend ``model.py`` it writes; do
not edit the copy. Triton's Python-backend stub embeds its own libpython and does not read
``PYTHONPATH`` (the stub of the ``nvidia-pytriton`` wheel sees only the system's folders), so
numpy and onnxruntime installed in a virtual environment are invisible to the model. The
export records the folders to add as the model parameter ``dymu_rt.site_packages`` (a JSON
list; by default the site-packages folders of the Python that ran the export, or those given
with ``--site-packages``) and the Python version they were installed for as
``dymu_rt.python``; :func:`add_site_dirs` reads both from the model's ``config.pbtxt``
(``model.py`` runs before Triton hands the model its config) and prepends the folders.
A config without the parameter (``--backend onnxruntime`` / ``tensorrt``) changes nothing.

Standard library only: this runs before anything else can be imported.
"""

import json
import re
import sys
from pathlib import Path

SITE_PARAM = "dymu_rt.site_packages"
PYTHON_PARAM = "dymu_rt.python"


def read_parameter(config_text, key):
    """The string value of parameter ``key`` in a config.pbtxt text, or None."""
    m = re.search(r'key:\s*"' + re.escape(key) + r'"\s*value\s*\{\s*string_value:\s*("(?:[^"\\]|\\.)*")',
                  config_text)
    return json.loads(m.group(1)) if m else None


def add_site_dirs(config_path):
    """Prepend the folders named by ``config_path``'s ``dymu_rt.site_packages`` to ``sys.path``;
    returns them. Raises RuntimeError (the model fails to load with this message) when the
    server's Python is not the version the folders were installed for."""
    text = Path(config_path).read_text()
    raw = read_parameter(text, SITE_PARAM)
    if raw is None:
        return []
    dirs = [str(d) for d in json.loads(raw)]
    want = read_parameter(text, PYTHON_PARAM)
    have = "%d.%d" % sys.version_info[:2]
    if want is not None and want != have:
        raise RuntimeError(f"error: {config_path}: {SITE_PARAM} holds packages for Python {want}, but this "
                           f"Triton Python backend runs Python {have}; export with a Python {have} "
                           "environment or point --site-packages at one")
    for d in reversed(dirs):
        if d not in sys.path:
            sys.path.insert(0, d)
    return dirs
