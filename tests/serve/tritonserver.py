"""Test-only helper: a real ``tritonserver`` process on free loopback ports.

The binary is ``$TRITONSERVER`` or the one in the ``nvidia-pytriton`` wheel
(``pytriton/tritonserver/bin/tritonserver``). The wheel keeps the Python backend's stubs
per Python version apart (``python_backend_stubs/<X.Y>/``); like pytriton itself, the
helper assembles a backend folder (``python/`` with ``libtriton_python.so``,
``triton_python_backend_utils.py`` and the stub of this interpreter's version) in a temp
folder and puts the wheel's ``nvidia_pytriton.libs`` on ``LD_LIBRARY_PATH``.
:func:`find_server` says why no server can run here (tests skip with that reason).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class ServerFiles:
    binary: Path
    backends: Path                  # folder holding python/ (libtriton_python.so, utils, stub)
    libs: Optional[Path]            # extra LD_LIBRARY_PATH entry


def _stub_problem(stub: Path) -> Optional[str]:
    """Why the stub cannot start here (its embedded libpython missing), or None."""
    try:
        out = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
    return f"the Python backend stub {stub} needs {', '.join(missing)}, not found" if missing else None


def find_server() -> tuple[Optional[ServerFiles], str]:
    """(the server's files, "") or (None, why not): ``$TRITONSERVER`` names a binary whose
    ``../backends`` holds the Python backend; otherwise the nvidia-pytriton wheel's."""
    if sys.platform != "linux":
        return None, f"tritonserver runs on Linux only (this is {sys.platform})"
    env = os.environ.get("TRITONSERVER")
    if env:
        binary = Path(env)
        if not binary.is_file():
            return None, f"$TRITONSERVER={env} is not a file"
        backends = binary.resolve().parent.parent / "backends"
        if not (backends / "python" / "libtriton_python.so").is_file():
            return None, f"$TRITONSERVER={env}: no Python backend in {backends}"
        return ServerFiles(binary, backends, None), ""
    try:
        import pytriton
    except ImportError:
        return None, "no tritonserver: neither $TRITONSERVER nor the nvidia-pytriton wheel (pip install -e '.[test]')"
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    binary = root / "bin" / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.is_file() or not stub.is_file():
        return None, f"the nvidia-pytriton wheel at {root} lacks the server or a Python {version} stub"
    problem = _stub_problem(stub)
    if problem:
        return None, problem
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return ServerFiles(binary, root / "backends", libs if libs.is_dir() else None), ""


def _backend_dir(files: ServerFiles, into: Path) -> Path:
    """A backend folder with the stub of this Python's version (the wheel's layout lacks it)."""
    if (files.backends / "python" / "triton_python_backend_stub").is_file():
        return files.backends
    py = into / "backends" / "python"
    py.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(files.backends / "python" / name, py / name)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copy2(files.backends.parent / "python_backend_stubs" / version / "triton_python_backend_stub",
                 py / "triton_python_backend_stub")
    return into / "backends"


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class TritonServer:
    """``tritonserver --model-repository REPO`` on 127.0.0.1 (http, grpc, metrics on free ports).

    ``model_control``: "none" (load everything at start), "poll" (``poll_secs``) or
    "explicit" (load models with the client's ``load_model``; ``--load-model=*`` at start).
    Use as a context manager, or :meth:`start` / :meth:`stop` / :meth:`kill`.
    """

    def __init__(self, repo, model_control: str = "none", poll_secs: int = 1, log: Optional[Path] = None,
                 files: Optional[ServerFiles] = None) -> None:
        self.repo = Path(repo)
        self.model_control = model_control
        self.poll_secs = poll_secs
        found, why = (files, "") if files else find_server()
        if found is None:
            raise RuntimeError(why)
        self.files = found
        self.workdir = Path(tempfile.mkdtemp(prefix="dymu-tritonserver-"))
        self.backends = _backend_dir(found, self.workdir)
        self.log_path = log or self.workdir / "server.log"
        # the Python backend's shared-memory regions, named so that kill() can remove them
        self.shm_prefix = f"dymu_test_{os.getpid()}_{self.workdir.name[-8:]}_"
        self.proc: Optional[subprocess.Popen] = None
        self.http_port = self.grpc_port = self.metrics_port = 0

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def start(self, timeout: float = 120.0) -> "TritonServer":
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        cmd = [str(self.files.binary), f"--model-repository={self.repo}",
               f"--backend-directory={self.backends}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
               f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
               f"--metrics-port={self.metrics_port}", "--allow-metrics=false", "--allow-gpu-metrics=false",
               f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}", "--strict-readiness=true", "--exit-on-error=true", "--exit-timeout-secs=3", "--log-verbose=0"]
        if self.model_control == "poll":
            cmd += ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_secs}"]
        elif self.model_control == "explicit":
            cmd += ["--model-control-mode=explicit", "--load-model=*"]
        env = dict(os.environ)
        if self.files.libs:
            env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), str(self.files.libs)) if p)
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if self.ready():
                return
            time.sleep(0.25)
        raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log()[-4000:]}")

    def _wait_exit(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Triton unloads its models and exits), SIGKILL after ``timeout``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self._wait_exit(timeout)
        if self.stubs():              # the server died first (a crash): nothing else ends them
            self.kill()
        self._close()

    def stubs(self) -> list[int]:
        """Process ids of this server's Python-backend stubs (they leave the server's process
        group; each names the server's shared-memory prefix on its command line)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if self.shm_prefix.encode() in cmdline and b"triton_python_backend_stub" in cmdline:
                pids.append(int(proc.name))
        return pids

    def kill(self) -> None:
        """SIGKILL the server and then its Python-backend stubs, as a crash of the machine's
        process would leave things (the stubs would otherwise linger without a parent)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        for pid in self.stubs():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):     # what a clean exit would remove
            region.unlink(missing_ok=True)
        self._close()

    def _close(self) -> None:
        if getattr(self, "_log_file", None):
            self._log_file.close()
            self._log_file = None

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()
