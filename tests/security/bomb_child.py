"""Child process of test_memory_bombs.py: run images through the runtime under RLIMIT_AS.

    python bomb_child.py LIMIT_BYTES OUT_DIR IMAGE...

Prints one JSON line per image: {"image", "outcome": "output" | "error", "message"}; any
other exception is left to escape (a traceback, which the test counts as a failure).
"""

import json
import resource
import sys

limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

from pathlib import Path  # noqa: E402

from dymu_rt.core.errors import DymuError  # noqa: E402
from dymu_rt.runtime import Runtime, default_bundle_path  # noqa: E402
from dymu_rt.runtime.outputs import make_tasks, write_outputs  # noqa: E402
from dymu_rt.runtime.preprocess import collect_images, load_image  # noqa: E402

out = Path(sys.argv[2])
rt = Runtime.open(default_bundle_path())
rt.set_preference("0.4,0.3,0.3", 0.5)
tasks = make_tasks(rt.tasks)
for i, image in enumerate(sys.argv[3:]):
    try:
        (f,) = collect_images([image])
        img = load_image(f)
        raw = rt.infer([img])
        write_outputs(img, {k: v[0] for k, v in raw.items()}, tasks, out, f"case{i}")
        row = {"image": image, "outcome": "output", "message": ""}
    except DymuError as e:
        row = {"image": image, "outcome": "error", "message": str(e)}
    print(json.dumps(row), flush=True)
