"""Where and in which precision a training stage runs: device, autocast, channels-last.

``--device auto|cpu|cuda|cuda:N`` picks the device (auto = CUDA when available);
``--precision fp32|bf16|fp16`` runs the forward pass under autocast (fp16 adds a
GradScaler, since fp16 gradients underflow); ``--channels-last`` stores conv activations
NHWC, which tensor cores prefer. What stays in fp32 whatever the precision: BatchNorm
statistics (autocast keeps batch_norm in fp32; the parameters and running buffers are
fp32 tensors), the task losses and the branching regularizer (the stages compute them
outside autocast on fp32 copies of the outputs), and the optimizer state.

Nothing here touches torch.distributed: see :mod:`dymu_rt.training.distributed`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Optional

import torch

from dymu_rt.core.errors import ValidationError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: Optional[str]) -> torch.device:
    """``auto`` (None), ``cpu``, ``cuda`` or ``cuda:N`` as a torch.device, checked to exist.

    A CUDA device this machine does not have is a ValidationError naming what it has.
    """
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if m is None:
        raise ValidationError(f"--device '{spec}' is not valid; expected auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValidationError(f"--device {spec}: this machine has no CUDA device "
                              "(torch was built without CUDA or no GPU is visible); use --device cpu")
    index = int(m.group(1)) if m.group(1) is not None else torch.cuda.current_device()
    if index >= count:
        raise ValidationError(f"--device {spec}: this machine has {count} CUDA device(s) "
                              f"(cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def check_precision(name: Optional[str], device: torch.device) -> str:
    """The validated precision name (None = fp32) for ``device``.

    fp16 is refused on CPU: CPU kernels gain nothing from it and the loss scaling it needs
    exists for CUDA; bf16 autocast works on both.
    """
    name = "fp32" if name is None else str(name).strip().lower()
    if name not in PRECISIONS:
        raise ValidationError(f"--precision '{name}' is not valid; expected one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise ValidationError("--precision fp16 needs a CUDA device; use bf16 or fp32 on "
                              f"{device.type}")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValidationError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 "
                              "support; use fp16 or fp32")
    return name


@dataclass(frozen=True)
class DeviceSetup:
    """Device, precision and memory format of one training process."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    channels_last: bool = False

    @staticmethod
    def create(device: Optional[str] = None, precision: Optional[str] = None,
               channels_last: bool = False) -> "DeviceSetup":
        """Validated settings from the command-line values (None = auto / fp32)."""
        dev = resolve_device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DeviceSetup(dev, check_precision(precision, dev), bool(channels_last))

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's autocast region (a no-op at fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def grad_scaler(self) -> "torch.amp.GradScaler":
        """A GradScaler, enabled only for fp16 (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` moved to the device (and to channels-last when asked)."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch on the device, in the module's memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batch(self, batch: Any) -> Any:
        """A collated batch (nested dicts of tensors) on the device; images in its format."""
        out = to_device(batch, self.device)
        if isinstance(out, dict) and "image" in out and self.channels_last:
            out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
        return out

    def to_dict(self) -> dict[str, Any]:
        """What the run config records about the device of a stage."""
        d = {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last}
        if self.is_cuda:
            d["device_name"] = torch.cuda.get_device_name(self.device)
        return d


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors in nested dicts/lists/tuples moved to ``device`` (non-blocking from pinned memory)."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def fp32_outputs(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model outputs as fp32 (losses are computed outside autocast, in fp32)."""
    return {k: v.float() for k, v in outputs.items()}
