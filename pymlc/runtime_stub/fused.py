"""The typed tensor ``Predict`` in one function, for the request that is exactly as the spec says.

A served tensor call goes through parse, decode (``codecs``), input checks, ``predict``, output
checks (``checks``) and encode: a dozen small Python functions. In a busy gRPC server each of
them runs with cold caches between calls and costs several times what it costs in a loop
(bench/README.md, serving). This module fuses those steps for the common
case only: every tensor present, of the spec's dtype and of a shape whose first dimension is the
batch and the rest fixed. Anything else (a parse error, an unknown field, a missing or misshaped
tensor, outputs of another dtype or kind) is handed to the general path, which gives the result
or the message; the fused path never words an error itself and never calls ``predict`` twice.
Tests hold the two paths to the same results and the same errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from google.protobuf import unknown_fields

from .checks import TensorSpec, check_output_tensors

__all__ = ["typed_tensor_predict"]

Handler = Callable[[bytes, Any], bytes]


def typed_tensor_predict(request_type: Any, response_type: Any, inputs: Sequence[TensorSpec],
                         outputs: Sequence[TensorSpec], predict: Callable[[Any], Any],
                         general: Handler) -> Handler | None:
    """The fused handler of a typed tensor service's ``Predict``, or None where it cannot help.

    Args:
        request_type: the generated ``PredictRequest`` class.
        response_type: the generated ``PredictResponse`` class.
        inputs: the spec's inputs, from ``checks.tensor_specs``.
        outputs: the spec's outputs, likewise.
        predict: the loaded model's ``predict``.
        general: the general handler (same arguments, same result); it takes every request the
            fused path does not vouch for.

    Returns:
        A handler ``(serialized request, context) -> serialized response``; None when a tensor's
        shape has wildcards beyond its first dimension (the general path checks those).
    """
    if any(spec.tail is None for spec in (*inputs, *outputs)):
        return None
    wanted_in = [(s.name, s.dtype, s.tail, s.rank) for s in inputs]
    wanted_out = [(s.name, s.dtype, s.tail, s.rank) for s in outputs]
    count_out = len(outputs)
    frombuffer = np.frombuffer
    ndarray = np.ndarray
    unknown = unknown_fields.UnknownFieldSet
    parse = request_type.FromString

    def handle(data: bytes, context: Any) -> bytes:
        try:
            request = parse(data)
        except Exception:  # noqa: BLE001 - the general path words the refusal
            return general(data, context)
        if len(unknown(request)):
            return general(data, context)
        tensors = {}
        for name, dtype, tail, rank in wanted_in:
            if not request.HasField(name):
                return general(data, context)
            tensor = getattr(request, name)
            shape = tuple(tensor.shape)
            try:
                array = frombuffer(tensor.data, dtype).reshape(shape)
            except ValueError:
                return general(data, context)
            got = array.shape
            if got != shape or got[1:] != tail or array.ndim != rank:
                return general(data, context)
            tensors[name] = array
        result = predict(tensors)
        if type(result) is not dict or len(result) != count_out:
            result = check_output_tensors(result, outputs)  # converts, or raises OutputError
        response = response_type()
        for name, dtype, tail, rank in wanted_out:
            value = result.get(name)
            # As in checks._conform_tensors: exactly the spec's dtype and shape needs nothing.
            if type(value) is not ndarray or value.dtype != dtype or value.shape[1:] != tail \
                    or value.ndim != rank:
                result = check_output_tensors(result, outputs)
                value = result[name]
            tensor = getattr(response, name)
            tensor.shape.extend(value.shape)
            tensor.data = value.tobytes()  # row-major bytes, whatever the array's strides
        return bytes(response.SerializeToString())

    return handle
