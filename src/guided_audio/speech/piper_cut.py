"""The Piper voice cutter, a program of its own: cuts a VITS voice model into three stages.

Called by `piper.PiperEngine` (never by hand) as

    python -m guided_audio.speech.piper_cut MODEL FRONT FLOW DECODER

It reads the whole model MODEL (with `onnx`, which holds it in memory: hence a process of
its own) and writes three ONNX models to the paths FRONT, FLOW and DECODER:

- the front ends at the phoneme lengths before they are rounded up to whole frames (the
  input of the model's one Ceil), so one run at length scale 1 gives a line's frames at any
  pace; its outputs are those lengths, then what later stages take;
- the flow makes the decoder's input (the latent) and the rounded lengths (for word times);
  its noise (the voice's sampled colour) becomes an input, `NOISE`, so that a line is read
  with the same noise every time;
- the decoder, from its first convolution on, makes the audio.

Each is saved with onnxruntime's portable graph optimisations done (fusions, constant
folding), so a voice loads faster every time. Exit status 0 when all three are written; 1,
with the reason on stderr, for a model that is not Piper's VITS graph (the caller then reads
the voice whole and does not try again); 2 for wrong arguments.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FLOW_NOISE = "NOISE"  # the flow stage's noise input (piper_graph feeds it)
SMALL_TENSOR_BYTES = 4096  # weights up to this size are kept for shape inference


def command(model: Path, stages: Sequence[Path]) -> list[str]:
    """The command line that cuts `model` into `stages` (front, flow, decoder)."""
    return [sys.executable, "-m", __name__, str(model), *map(str, stages)]


def _upstream(made: dict[str, Any], names: Iterable[str]) -> dict[int, Any]:
    """Every node that the values `names` are computed from, by identity."""
    found: dict[int, Any] = {}
    todo = list(names)
    while todo:
        node = made.get(todo.pop())
        if node is not None and id(node) not in found:
            found[id(node)] = node
            todo += node.input
    return found


def cut(model_path: str, stage_paths: Sequence[str]) -> None:
    """Write the front, flow and decoder of the model at `model_path` to `stage_paths`;
    ValueError for a graph that is not Piper's VITS."""
    import onnx
    import onnx.utils

    model = onnx.load(model_path)
    graph = model.graph
    ceils = [node for node in graph.node if node.op_type == "Ceil"]
    decoders = [node for node in graph.node if node.name.endswith("/dec/conv_pre/Conv")]
    if len(ceils) != 1 or len(decoders) != 1:
        raise ValueError("not a Piper VITS graph (one Ceil and one dec/conv_pre expected)")
    (ceil,), (decoder,) = ceils, decoders
    made = {name: node for node in graph.node for name in node.output}
    ends = [[ceil.input[0]], [decoder.input[0], ceil.output[0]], [graph.output[0].name]]
    stages: list[dict[int, Any]] = []
    seen: set[int] = set()
    for names in ends:
        nodes = {k: v for k, v in _upstream(made, names).items() if k not in seen}
        seen |= set(nodes)
        stages.append(nodes)
    inputs = {i.name for i in graph.input}
    made_in = [{name for node in nodes.values() for name in node.output} for nodes in stages]
    needs = [{name for node in nodes.values() for name in node.input} for nodes in stages]
    extractor = onnx.utils.Extractor(model)
    typed = _types(onnx, model)
    for n, path in enumerate(stage_paths):
        earlier = set().union(inputs, *made_in[:n])
        later = set().union(*needs[n + 1 :])
        crossing = sorted((made_in[n] & later) - set(ends[n]))
        stage_inputs = sorted(needs[n] & earlier)
        stage = extractor.extract_model(stage_inputs, [*ends[n], *crossing])
        if n > 0:  # the front's noise (phoneme lengths) is scaled by noise_w_scale 0
            _noise_as_input(onnx, stage, typed)
        onnx.save(stage, path)


def _types(onnx: Any, model: Any) -> dict[str, Any]:
    """Every value's inferred type, inferred on a copy of the graph without its weights
    (their shapes only): a copy with them would double the process's memory."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    graph = light.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    for tensor in model.graph.initializer:
        if len(tensor.raw_data) <= SMALL_TENSOR_BYTES:  # shapes for Reshape and the like
            graph.initializer.append(tensor)
        else:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
            )
    inferred = onnx.shape_inference.infer_shapes(light).graph.value_info
    return {value.name: value for value in inferred}


def _noise_as_input(onnx: Any, stage: Any, typed: dict[str, Any]) -> None:
    """The stage's sampled noise (RandomNormalLike) becomes the input FLOW_NOISE."""
    for node in [node for node in stage.graph.node if node.op_type == "RandomNormalLike"]:
        for user in stage.graph.node:
            user.input[:] = [FLOW_NOISE if name == node.output[0] else name for name in user.input]
        stage.graph.node.remove(node)
        noise = onnx.ValueInfoProto()
        noise.CopyFrom(typed[node.output[0]])
        noise.name = FLOW_NOISE
        stage.graph.input.append(noise)


def _optimised(path: str) -> None:
    """Save the model at `path` again with onnxruntime's portable optimisations done (the
    layout ones, for this CPU's vector width, are still done at load)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = path + ".optimised"
    onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    os.chmod(path + ".optimised", os.stat(path).st_mode)  # owner-only, as the cut was
    os.replace(path + ".optimised", path)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(f"usage: python -m {__name__} MODEL FRONT FLOW DECODER", file=sys.stderr)
        return 2
    try:
        cut(argv[0], argv[1:])  # the whole model is freed before onnxruntime loads a stage
        for path in argv[1:]:
            _optimised(path)
    except ValueError as exc:
        print(f"cannot cut {argv[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
