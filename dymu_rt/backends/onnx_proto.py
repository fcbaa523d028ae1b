"""ONNX protobuf messages without the ``onnx`` package: what the base install's runtime needs.

The ONNX Runtime backend edits graphs before it runs them (affine binding inserts a per-channel
Mul/Add after each modulated conv; ``session`` binding replaces initializers). That needs the
ONNX protobuf messages, not the ``onnx`` package: ``protobuf`` comes with onnxruntime, and the
message classes are built here from ONNX's own file descriptor (``onnx/onnx-ml.proto``,
serialized from onnx 1.23.2; the wire format is stable across ONNX versions). These classes
are used even when ``onnx`` is installed: importing onnx costs ~0.4 s of a ~1 s cold start
(benchmarks/bench_cold_start.py); ``prefer_onnx=True`` asks for onnx's own classes.

:func:`load_model` reads a graph and (optionally) the external data it references;
:func:`array_to_tensor` / :func:`tensor_to_array` convert float/int tensors.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

import numpy as np

_DESCRIPTOR = (
    "ChJvbm54L29ubngtbWwucHJvdG8SBG9ubngi2wUKDkF0dHJpYnV0ZVByb3RvEgwKBG5hbWUYASABKAkSFQoNcmVmX2F0dHJf"
    "bmFtZRgVIAEoCRISCgpkb2Nfc3RyaW5nGA0gASgJEjAKBHR5cGUYFCABKA4yIi5vbm54LkF0dHJpYnV0ZVByb3RvLkF0dHJp"
    "YnV0ZVR5cGUSCQoBZhgCIAEoAhIJCgFpGAMgASgDEgkKAXMYBCABKAwSHAoBdBgFIAEoCzIRLm9ubnguVGVuc29yUHJvdG8S"
    "GwoBZxgGIAEoCzIQLm9ubnguR3JhcGhQcm90bxIuCg1zcGFyc2VfdGVuc29yGBYgASgLMhcub25ueC5TcGFyc2VUZW5zb3JQ"
    "cm90bxIbCgJ0cBgOIAEoCzIPLm9ubnguVHlwZVByb3RvEg4KBmZsb2F0cxgHIAMoAhIMCgRpbnRzGAggAygDEg8KB3N0cmlu"
    "Z3MYCSADKAwSIgoHdGVuc29ycxgKIAMoCzIRLm9ubnguVGVuc29yUHJvdG8SIAoGZ3JhcGhzGAsgAygLMhAub25ueC5HcmFw"
    "aFByb3RvEi8KDnNwYXJzZV90ZW5zb3JzGBcgAygLMhcub25ueC5TcGFyc2VUZW5zb3JQcm90bxIkCgt0eXBlX3Byb3RvcxgP"
    "IAMoCzIPLm9ubnguVHlwZVByb3RvItkBCg1BdHRyaWJ1dGVUeXBlEg0KCVVOREVGSU5FRBAAEgkKBUZMT0FUEAESBwoDSU5U"
    "EAISCgoGU1RSSU5HEAMSCgoGVEVOU09SEAQSCQoFR1JBUEgQBRIRCg1TUEFSU0VfVEVOU09SEAsSDgoKVFlQRV9QUk9UTxAN"
    "EgoKBkZMT0FUUxAGEggKBElOVFMQBxILCgdTVFJJTkdTEAgSCwoHVEVOU09SUxAJEgoKBkdSQVBIUxAKEhIKDlNQQVJTRV9U"
    "RU5TT1JTEAwSDwoLVFlQRV9QUk9UT1MQDkoECAwQDUoECBAQFFIBdiKHAQoOVmFsdWVJbmZvUHJvdG8SDAoEbmFtZRgBIAEo"
    "CRIdCgR0eXBlGAIgASgLMg8ub25ueC5UeXBlUHJvdG8SEgoKZG9jX3N0cmluZxgDIAEoCRI0Cg5tZXRhZGF0YV9wcm9wcxgE"
    "IAMoCzIcLm9ubnguU3RyaW5nU3RyaW5nRW50cnlQcm90byKhAgoJTm9kZVByb3RvEg0KBWlucHV0GAEgAygJEg4KBm91dHB1"
    "dBgCIAMoCRIMCgRuYW1lGAMgASgJEg8KB29wX3R5cGUYBCABKAkSDgoGZG9tYWluGAcgASgJEhAKCG92ZXJsb2FkGAggASgJ"
    "EicKCWF0dHJpYnV0ZRgFIAMoCzIULm9ubnguQXR0cmlidXRlUHJvdG8SEgoKZG9jX3N0cmluZxgGIAEoCRI0Cg5tZXRhZGF0"
    "YV9wcm9wcxgJIAMoCzIcLm9ubnguU3RyaW5nU3RyaW5nRW50cnlQcm90bxJBChVkZXZpY2VfY29uZmlndXJhdGlvbnMYCiAD"
    "KAsyIi5vbm54Lk5vZGVEZXZpY2VDb25maWd1cmF0aW9uUHJvdG8iMgoUSW50SW50TGlzdEVudHJ5UHJvdG8SCwoDa2V5GAEg"
    "ASgDEg0KBXZhbHVlGAIgAygDIoABChxOb2RlRGV2aWNlQ29uZmlndXJhdGlvblByb3RvEhgKEGNvbmZpZ3VyYXRpb25faWQY"
    "ASABKAkSLgoNc2hhcmRpbmdfc3BlYxgCIAMoCzIXLm9ubnguU2hhcmRpbmdTcGVjUHJvdG8SFgoOcGlwZWxpbmVfc3RhZ2UY"
    "AyABKAUiowEKEVNoYXJkaW5nU3BlY1Byb3RvEhMKC3RlbnNvcl9uYW1lGAEgASgJEg4KBmRldmljZRgCIAMoAxI9ChlpbmRl"
    "eF90b19kZXZpY2VfZ3JvdXBfbWFwGAMgAygLMhoub25ueC5JbnRJbnRMaXN0RW50cnlQcm90bxIqCgtzaGFyZGVkX2RpbRgE"
    "IAMoCzIVLm9ubnguU2hhcmRlZERpbVByb3RvIlUKD1NoYXJkZWREaW1Qcm90bxIMCgRheGlzGAEgASgDEjQKD3NpbXBsZV9z"
    "aGFyZGluZxgCIAMoCzIbLm9ubnguU2ltcGxlU2hhcmRlZERpbVByb3RvIlwKFVNpbXBsZVNoYXJkZWREaW1Qcm90bxITCglk"
    "aW1fdmFsdWUYASABKANIABITCglkaW1fcGFyYW0YAiABKAlIABISCgpudW1fc2hhcmRzGAMgASgDQgUKA2RpbSLWAQoRVHJh"
    "aW5pbmdJbmZvUHJvdG8SKAoOaW5pdGlhbGl6YXRpb24YASABKAsyEC5vbm54LkdyYXBoUHJvdG8SIwoJYWxnb3JpdGhtGAIg"
    "ASgLMhAub25ueC5HcmFwaFByb3RvEjwKFmluaXRpYWxpemF0aW9uX2JpbmRpbmcYAyADKAsyHC5vbm54LlN0cmluZ1N0cmlu"
    "Z0VudHJ5UHJvdG8SNAoOdXBkYXRlX2JpbmRpbmcYBCADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0VudHJ5UHJvdG8iogMKCk1v"
    "ZGVsUHJvdG8SEgoKaXJfdmVyc2lvbhgBIAEoAxIuCgxvcHNldF9pbXBvcnQYCCADKAsyGC5vbm54Lk9wZXJhdG9yU2V0SWRQ"
    "cm90bxIVCg1wcm9kdWNlcl9uYW1lGAIgASgJEhgKEHByb2R1Y2VyX3ZlcnNpb24YAyABKAkSDgoGZG9tYWluGAQgASgJEhUK"
    "DW1vZGVsX3ZlcnNpb24YBSABKAMSEgoKZG9jX3N0cmluZxgGIAEoCRIfCgVncmFwaBgHIAEoCzIQLm9ubnguR3JhcGhQcm90"
    "bxI0Cg5tZXRhZGF0YV9wcm9wcxgOIAMoCzIcLm9ubnguU3RyaW5nU3RyaW5nRW50cnlQcm90bxIuCg10cmFpbmluZ19pbmZv"
    "GBQgAygLMhcub25ueC5UcmFpbmluZ0luZm9Qcm90bxImCglmdW5jdGlvbnMYGSADKAsyEy5vbm54LkZ1bmN0aW9uUHJvdG8S"
    "NQoNY29uZmlndXJhdGlvbhgaIAMoCzIeLm9ubnguRGV2aWNlQ29uZmlndXJhdGlvblByb3RvIk0KGERldmljZUNvbmZpZ3Vy"
    "YXRpb25Qcm90bxIMCgRuYW1lGAEgASgJEhMKC251bV9kZXZpY2VzGAIgASgFEg4KBmRldmljZRgDIAMoCSI0ChZTdHJpbmdT"
    "dHJpbmdFbnRyeVByb3RvEgsKA2tleRgBIAEoCRINCgV2YWx1ZRgCIAEoCSJrChBUZW5zb3JBbm5vdGF0aW9uEhMKC3RlbnNv"
    "cl9uYW1lGAEgASgJEkIKHHF1YW50X3BhcmFtZXRlcl90ZW5zb3JfbmFtZXMYAiADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0Vu"
    "dHJ5UHJvdG8i1AMKCkdyYXBoUHJvdG8SHQoEbm9kZRgBIAMoCzIPLm9ubnguTm9kZVByb3RvEgwKBG5hbWUYAiABKAkSJgoL"
    "aW5pdGlhbGl6ZXIYBSADKAsyES5vbm54LlRlbnNvclByb3RvEjMKEnNwYXJzZV9pbml0aWFsaXplchgPIAMoCzIXLm9ubngu"
    "U3BhcnNlVGVuc29yUHJvdG8SEgoKZG9jX3N0cmluZxgKIAEoCRIjCgVpbnB1dBgLIAMoCzIULm9ubnguVmFsdWVJbmZvUHJv"
    "dG8SJAoGb3V0cHV0GAwgAygLMhQub25ueC5WYWx1ZUluZm9Qcm90bxIoCgp2YWx1ZV9pbmZvGA0gAygLMhQub25ueC5WYWx1"
    "ZUluZm9Qcm90bxI3ChdxdWFudGl6YXRpb25fYW5ub3RhdGlvbhgOIAMoCzIWLm9ubnguVGVuc29yQW5ub3RhdGlvbhI0Cg5t"
    "ZXRhZGF0YV9wcm9wcxgQIAMoCzIcLm9ubnguU3RyaW5nU3RyaW5nRW50cnlQcm90b0oECAMQBEoECAQQBUoECAYQClIKaXJf"
    "dmVyc2lvblIQcHJvZHVjZXJfdmVyc2lvblIMcHJvZHVjZXJfdGFnUgZkb21haW4iogcKC1RlbnNvclByb3RvEgwKBGRpbXMY"
    "ASADKAMSEQoJZGF0YV90eXBlGAIgASgFEioKB3NlZ21lbnQYAyABKAsyGS5vbm54LlRlbnNvclByb3RvLlNlZ21lbnQSFgoK"
    "ZmxvYXRfZGF0YRgEIAMoAkICEAESFgoKaW50MzJfZGF0YRgFIAMoBUICEAESEwoLc3RyaW5nX2RhdGEYBiADKAwSFgoKaW50"
    "NjRfZGF0YRgHIAMoA0ICEAESDAoEbmFtZRgIIAEoCRISCgpkb2Nfc3RyaW5nGAwgASgJEhAKCHJhd19kYXRhGAkgASgMEjMK"
    "DWV4dGVybmFsX2RhdGEYDSADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0VudHJ5UHJvdG8SNQoNZGF0YV9sb2NhdGlvbhgOIAEo"
    "DjIeLm9ubnguVGVuc29yUHJvdG8uRGF0YUxvY2F0aW9uEhcKC2RvdWJsZV9kYXRhGAogAygBQgIQARIXCgt1aW50NjRfZGF0"
    "YRgLIAMoBEICEAESNAoObWV0YWRhdGFfcHJvcHMYECADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0VudHJ5UHJvdG8aJQoHU2Vn"
    "bWVudBINCgViZWdpbhgBIAEoAxILCgNlbmQYAiABKAMijgMKCERhdGFUeXBlEg0KCVVOREVGSU5FRBAAEgkKBUZMT0FUEAES"
    "CQoFVUlOVDgQAhIICgRJTlQ4EAMSCgoGVUlOVDE2EAQSCQoFSU5UMTYQBRIJCgVJTlQzMhAGEgkKBUlOVDY0EAcSCgoGU1RS"
    "SU5HEAgSCAoEQk9PTBAJEgsKB0ZMT0FUMTYQChIKCgZET1VCTEUQCxIKCgZVSU5UMzIQDBIKCgZVSU5UNjQQDRINCglDT01Q"
    "TEVYNjQQDhIOCgpDT01QTEVYMTI4EA8SDAoIQkZMT0FUMTYQEBIQCgxGTE9BVDhFNE0zRk4QERISCg5GTE9BVDhFNE0zRk5V"
    "WhASEg4KCkZMT0FUOEU1TTIQExISCg5GTE9BVDhFNU0yRk5VWhAUEgkKBVVJTlQ0EBUSCAoESU5UNBAWEg4KCkZMT0FUNEUy"
    "TTEQFxIOCgpGTE9BVDhFOE0wEBgSCQoFVUlOVDIQGRIICgRJTlQyEBoSDgoKRkxPQVQ2RTJNMxAbEg4KCkZMT0FUNkUzTTIQ"
    "HCIpCgxEYXRhTG9jYXRpb24SCwoHREVGQVVMVBAAEgwKCEVYVEVSTkFMEAEiaAoRU3BhcnNlVGVuc29yUHJvdG8SIQoGdmFs"
    "dWVzGAEgASgLMhEub25ueC5UZW5zb3JQcm90bxIiCgdpbmRpY2VzGAIgASgLMhEub25ueC5UZW5zb3JQcm90bxIMCgRkaW1z"
    "GAMgAygDIpUBChBUZW5zb3JTaGFwZVByb3RvEi0KA2RpbRgBIAMoCzIgLm9ubnguVGVuc29yU2hhcGVQcm90by5EaW1lbnNp"
    "b24aUgoJRGltZW5zaW9uEhMKCWRpbV92YWx1ZRgBIAEoA0gAEhMKCWRpbV9wYXJhbRgCIAEoCUgAEhIKCmRlbm90YXRpb24Y"
    "AyABKAlCBwoFdmFsdWUitwUKCVR5cGVQcm90bxItCgt0ZW5zb3JfdHlwZRgBIAEoCzIWLm9ubnguVHlwZVByb3RvLlRlbnNv"
    "ckgAEjEKDXNlcXVlbmNlX3R5cGUYBCABKAsyGC5vbm54LlR5cGVQcm90by5TZXF1ZW5jZUgAEicKCG1hcF90eXBlGAUgASgL"
    "MhMub25ueC5UeXBlUHJvdG8uTWFwSAASMQoNb3B0aW9uYWxfdHlwZRgJIAEoCzIYLm9ubnguVHlwZVByb3RvLk9wdGlvbmFs"
    "SAASOgoSc3BhcnNlX3RlbnNvcl90eXBlGAggASgLMhwub25ueC5UeXBlUHJvdG8uU3BhcnNlVGVuc29ySAASLQoLb3BhcXVl"
    "X3R5cGUYByABKAsyFi5vbm54LlR5cGVQcm90by5PcGFxdWVIABISCgpkZW5vdGF0aW9uGAYgASgJGkIKBlRlbnNvchIRCgll"
    "bGVtX3R5cGUYASABKAUSJQoFc2hhcGUYAiABKAsyFi5vbm54LlRlbnNvclNoYXBlUHJvdG8aLgoIU2VxdWVuY2USIgoJZWxl"
    "bV90eXBlGAEgASgLMg8ub25ueC5UeXBlUHJvdG8aPAoDTWFwEhAKCGtleV90eXBlGAEgASgFEiMKCnZhbHVlX3R5cGUYAiAB"
    "KAsyDy5vbm54LlR5cGVQcm90bxouCghPcHRpb25hbBIiCgllbGVtX3R5cGUYASABKAsyDy5vbm54LlR5cGVQcm90bxpICgxT"
    "cGFyc2VUZW5zb3ISEQoJZWxlbV90eXBlGAEgASgFEiUKBXNoYXBlGAIgASgLMhYub25ueC5UZW5zb3JTaGFwZVByb3RvGjgK"
    "Bk9wYXF1ZRIOCgZkb21haW4YASABKAkSDAoEbmFtZRgCIAEoCUoECAMQBFIKcGFyYW1ldGVyc0IHCgV2YWx1ZSI1ChJPcGVy"
    "YXRvclNldElkUHJvdG8SDgoGZG9tYWluGAEgASgJEg8KB3ZlcnNpb24YAiABKAMihgMKDUZ1bmN0aW9uUHJvdG8SDAoEbmFt"
    "ZRgBIAEoCRINCgVpbnB1dBgEIAMoCRIOCgZvdXRwdXQYBSADKAkSEQoJYXR0cmlidXRlGAYgAygJEi0KD2F0dHJpYnV0ZV9w"
    "cm90bxgLIAMoCzIULm9ubnguQXR0cmlidXRlUHJvdG8SHQoEbm9kZRgHIAMoCzIPLm9ubnguTm9kZVByb3RvEhIKCmRvY19z"
    "dHJpbmcYCCABKAkSLgoMb3BzZXRfaW1wb3J0GAkgAygLMhgub25ueC5PcGVyYXRvclNldElkUHJvdG8SDgoGZG9tYWluGAog"
    "ASgJEhAKCG92ZXJsb2FkGA0gASgJEigKCnZhbHVlX2luZm8YDCADKAsyFC5vbm54LlZhbHVlSW5mb1Byb3RvEjQKDm1ldGFk"
    "YXRhX3Byb3BzGA4gAygLMhwub25ueC5TdHJpbmdTdHJpbmdFbnRyeVByb3RvSgQIAhADSgQIAxAEUg1zaW5jZV92ZXJzaW9u"
    "UgZzdGF0dXMqggMKB1ZlcnNpb24SEgoOX1NUQVJUX1ZFUlNJT04QABIZChVJUl9WRVJTSU9OXzIwMTdfMTBfMTAQARIZChVJ"
    "Ul9WRVJTSU9OXzIwMTdfMTBfMzAQAhIYChRJUl9WRVJTSU9OXzIwMTdfMTFfMxADEhgKFElSX1ZFUlNJT05fMjAxOV8xXzIy"
    "EAQSGAoUSVJfVkVSU0lPTl8yMDE5XzNfMTgQBRIYChRJUl9WRVJTSU9OXzIwMTlfOV8xORAGEhcKE0lSX1ZFUlNJT05fMjAy"
    "MF81XzgQBxIYChRJUl9WRVJTSU9OXzIwMjFfN18zMBAIEhcKE0lSX1ZFUlNJT05fMjAyM181XzUQCRIYChRJUl9WRVJTSU9O"
    "XzIwMjRfM18yNRAKEhkKFUlSX1ZFUlNJT05fMjAyNV8wNV8xMhALEhkKFUlSX1ZFUlNJT05fMjAyNV8wOF8yNhAMEhkKFUlS"
    "X1ZFUlNJT05fMjAyNV8xMV8wNhANEg4KCklSX1ZFUlNJT04QDiouCg5PcGVyYXRvclN0YXR1cxIQCgxFWFBFUklNRU5UQUwQ"
    "ABIKCgZTVEFCTEUQAUICSAM="
)

#: TensorProto.DataType codes this module converts (numpy dtype <-> ONNX code)
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
EXTERNAL = 1                       # TensorProto.DataLocation.EXTERNAL


@functools.lru_cache(maxsize=None)
def _classes(prefer_onnx: bool = False) -> dict[str, Any]:
    if prefer_onnx:
        try:
            import onnx

            return {"ModelProto": onnx.ModelProto, "TensorProto": onnx.TensorProto,
                    "NodeProto": onnx.NodeProto, "ValueInfoProto": onnx.ValueInfoProto}
        except ImportError:
            pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode("".join(_DESCRIPTOR))))

    def cls(name):
        desc = pool.FindMessageTypeByName(f"onnx.{name}")
        get = getattr(message_factory, "GetMessageClass", None)
        return get(desc) if get is not None else message_factory.MessageFactory(pool).GetPrototype(desc)

    return {n: cls(n) for n in ("ModelProto", "TensorProto", "NodeProto", "ValueInfoProto")}


def message(name: str, prefer_onnx: bool = False):
    """The ONNX message class ``name`` (``ModelProto``, ``TensorProto``, ``NodeProto``, ``ValueInfoProto``)."""
    return _classes(prefer_onnx)[name]


def load_model(path: str | Path, external: bool = True, prefer_onnx: bool = False):
    """The ModelProto of the graph file ``path``; with ``external``, every initializer stored as
    external data (``location`` / ``offset`` / ``length``, resolved next to the graph) is read in."""
    path = Path(path)
    model = message("ModelProto", prefer_onnx).FromString(path.read_bytes())
    return load_external(model, path.parent) if external else model


def external_bytes(model, folder: str | Path) -> int:
    """Bytes of external data ``model``'s initializers reference (``length`` of each range; a
    reference without a length counts its whole file once)."""
    ext, whole = 0, set()
    for init in model.graph.initializer:
        if init.data_location != EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        if "length" in info:
            ext += int(info["length"])
        elif "location" in info:
            whole.add(info["location"])
    for loc in whole:
        f = Path(folder) / loc
        ext += f.stat().st_size if f.is_file() else 0
    return ext


def load_external(model, folder: str | Path):
    """Read the external data of ``model``'s initializers (files under ``folder``) inline, in place;
    returns ``model``."""
    for init in model.graph.initializer:
        if init.data_location != EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        with open(Path(folder) / info["location"], "rb") as f:
            f.seek(int(info.get("offset", 0)))
            length = info.get("length")
            init.raw_data = f.read(int(length)) if length is not None else f.read()
        del init.external_data[:]
        init.data_location = 0                     # DEFAULT: the bytes are inline now
    return model


def array_to_tensor(array: np.ndarray, name: str, like=None):
    """A TensorProto holding ``array`` (raw little-endian bytes), of the same message class as
    ``like`` (a proto of the model it goes into) when given."""
    a = np.ascontiguousarray(array)
    if a.dtype not in _CODES:
        raise TypeError(f"tensor {name}: dtype {a.dtype} is not supported")
    cls = type(like) if like is not None else message("TensorProto")
    t = cls()
    t.name = name
    t.data_type = _CODES[a.dtype]
    t.dims.extend(a.shape)
    t.raw_data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    return t


def tensor_to_array(tensor) -> np.ndarray:
    """The numpy array of an inline TensorProto (raw_data or the typed fields)."""
    dtype = _DTYPES.get(tensor.data_type)
    if dtype is None:
        raise TypeError(f"tensor {tensor.name}: ONNX data type {tensor.data_type} is not supported")
    shape = tuple(tensor.dims)
    if tensor.raw_data:
        return np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
    field = {1: "float_data", 11: "double_data", 7: "int64_data"}.get(tensor.data_type, "int32_data")
    return np.asarray(getattr(tensor, field), dtype=dtype).reshape(shape)
