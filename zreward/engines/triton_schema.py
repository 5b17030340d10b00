"""The part of Triton's `inference.ModelConfig` (model_config.proto) that zreward writes, as a
protobuf message class built at run time, so config.pbtxt files are checked by protobuf's own
text-format parser (unknown fields, wrong types and bad enum values are errors) without the server.

Names, types and field numbers follow triton-inference-server/common protobuf/model_config.proto.
"""

from __future__ import annotations

from functools import lru_cache

DATA_TYPES = ["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8",
              "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING",
              "TYPE_BF16"]
KINDS = ["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]

# message -> [(field, number, type, label, type_name)]; label "r" = repeated.
MESSAGES = {
    "ModelTensorReshape": [("shape", 1, "int64", "r", None)],
    "ModelInput": [("name", 1, "string", "", None), ("data_type", 2, "enum", "", "DataType"),
                   ("dims", 4, "int64", "r", None), ("reshape", 5, "message", "", "ModelTensorReshape"),
                   ("is_shape_tensor", 6, "bool", "", None), ("allow_ragged_batch", 7, "bool", "", None),
                   ("optional", 8, "bool", "", None)],
    "ModelOutput": [("name", 1, "string", "", None), ("data_type", 2, "enum", "", "DataType"),
                    ("dims", 3, "int64", "r", None), ("label_filename", 4, "string", "", None),
                    ("reshape", 5, "message", "", "ModelTensorReshape"), ("is_shape_tensor", 6, "bool", "", None)],
    "ModelInstanceGroup": [("name", 1, "string", "", None), ("count", 2, "int32", "", None),
                           ("gpus", 3, "int32", "r", None), ("kind", 4, "enum", "", "ModelInstanceGroup.Kind"),
                           ("profile", 5, "string", "r", None), ("passive", 7, "bool", "", None),
                           ("host_policy", 9, "string", "", None)],
    "ModelDynamicBatching": [("preferred_batch_size", 1, "int32", "r", None),
                             ("max_queue_delay_microseconds", 2, "uint64", "", None),
                             ("preserve_ordering", 3, "bool", "", None), ("priority_levels", 4, "uint64", "", None),
                             ("default_priority_level", 5, "uint64", "", None)],
    "ModelEnsembling.Step": [("model_name", 1, "string", "", None), ("model_version", 2, "int64", "", None),
                             ("input_map", 3, "message", "r", "ModelEnsembling.Step.InputMapEntry"),
                             ("output_map", 4, "message", "r", "ModelEnsembling.Step.OutputMapEntry")],
    "ModelEnsembling": [("step", 1, "message", "r", "ModelEnsembling.Step"),
                        ("max_inflight_responses", 2, "uint32", "", None)],
    "ModelParameter": [("string_value", 1, "string", "", None)],
    "ModelConfig": [("name", 1, "string", "", None), ("platform", 2, "string", "", None),
                    ("max_batch_size", 4, "int32", "", None), ("input", 5, "message", "r", "ModelInput"),
                    ("output", 6, "message", "r", "ModelOutput"),
                    ("instance_group", 7, "message", "r", "ModelInstanceGroup"),
                    ("default_model_filename", 8, "string", "", None),
                    ("dynamic_batching", 11, "message", "", "ModelDynamicBatching"),
                    ("parameters", 14, "message", "r", "ModelConfig.ParametersEntry"),
                    ("ensemble_scheduling", 15, "message", "", "ModelEnsembling"),
                    ("backend", 17, "string", "", None), ("runtime", 25, "string", "", None)],
}
MAPS = {"ModelEnsembling.Step.InputMapEntry": "string", "ModelEnsembling.Step.OutputMapEntry": "string",
        "ModelConfig.ParametersEntry": "ModelParameter"}


@lru_cache(maxsize=1)
def model_config_class():
    """The ModelConfig message class (a subset of Triton's schema)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    scalar = {"string": F.TYPE_STRING, "int64": F.TYPE_INT64, "int32": F.TYPE_INT32, "uint64": F.TYPE_UINT64,
              "uint32": F.TYPE_UINT32, "bool": F.TYPE_BOOL, "enum": F.TYPE_ENUM, "message": F.TYPE_MESSAGE}
    fdp = descriptor_pb2.FileDescriptorProto(name="zreward_triton_model_config.proto", package="inference",
                                             syntax="proto3")
    dtype = fdp.enum_type.add(name="DataType")
    for i, v in enumerate(DATA_TYPES):
        dtype.value.add(name=v, number=i)
    protos = {}

    def proto(path: str):
        # Nested messages (A.B) live inside their parent's descriptor.
        if path not in protos:
            parent, _, leaf = path.rpartition(".")
            container = proto(parent).nested_type if parent else fdp.message_type
            protos[path] = container.add(name=leaf)
        return protos[path]

    def add_field(msg, name, number, kind, label, type_name):
        field = msg.field.add(name=name, number=number, type=scalar[kind],
                              label=F.LABEL_REPEATED if label == "r" else F.LABEL_OPTIONAL)
        if type_name:
            field.type_name = f".inference.{type_name}"

    for path in sorted(MESSAGES, key=lambda p: p.count(".")):
        msg = proto(path)
        for spec in MESSAGES[path]:
            add_field(msg, *spec)
    kind = proto("ModelInstanceGroup").enum_type.add(name="Kind")
    for i, v in enumerate(KINDS):
        kind.value.add(name=v, number=i)
    for path, value in MAPS.items():
        entry = proto(path)
        entry.options.map_entry = True
        add_field(entry, "key", 1, "string", "", None)
        add_field(entry, "value", 2, "message" if value != "string" else "string", "",
                  value if value != "string" else None)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))
