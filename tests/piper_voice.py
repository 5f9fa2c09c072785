"""A tiny, real Piper voice for tests: an ONNX graph with Piper's inputs and outputs, no weights to download.

Each phoneme id becomes `256 * length_scale` samples of a sine whose pitch rises with the id (and with the
speaker id in a multi-speaker voice), so the audio is deterministic, grows with the text and shrinks with speed.
Needs the `onnx` package (and `piper` for the phoneme map real English voices use).
"""

from __future__ import annotations

import json
from pathlib import Path

SAMPLES_PER_ID = 256  # Piper's hop length: one phoneme id lasts one hop at length_scale 1
OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime that piper-tts 1.8 accepts


def make_tiny_piper_voice(dir: Path, *, sample_rate: int = 16000, num_speakers: int = 1) -> Path:
    """Write `tiny.onnx` and `tiny.onnx.json` (an en-us espeak voice) into `dir`; return the .onnx path."""
    import onnx
    from onnx import TensorProto, helper
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    def const(name: str, value, dtype=TensorProto.FLOAT, dims=()):
        values = value if isinstance(value, list) else [value]
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, dims, values))

    # scales = [noise_scale, length_scale, noise_w]: only length_scale matters to this voice.
    nodes = [
        const("one_idx", 1, TensorProto.INT64),
        helper.make_node("Gather", ["scales", "one_idx"], ["length_scale"], axis=0),
        const("hop", float(SAMPLES_PER_ID)),
        helper.make_node("Mul", ["hop", "length_scale"], ["n_float"]),
        helper.make_node("Round", ["n_float"], ["n"]),
        const("zero", 0.0),
        const("step", 1.0),
        helper.make_node("Range", ["zero", "n", "step"], ["t"]),  # [L] sample index within one phoneme
        const("row_shape", [1, -1], TensorProto.INT64, [2]),
        helper.make_node("Reshape", ["t", "row_shape"], ["t_row"]),  # [1, L]
        helper.make_node("Cast", ["input"], ["ids_f"], to=TensorProto.FLOAT),
        const("col_shape", [-1, 1], TensorProto.INT64, [2]),
        helper.make_node("Reshape", ["ids_f", "col_shape"], ["ids_col"]),  # [T, 1]
        const("hz_per_id", 15.0),
        const("base_hz", 120.0),
        helper.make_node("Mul", ["ids_col", "hz_per_id"], ["id_hz"]),
        helper.make_node("Add", ["id_hz", "base_hz"], ["hz0"]),
    ]
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.INT64, [1, "T"]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
    ]
    if num_speakers > 1:
        # Each speaker an octave-fraction higher: 1 + sid / 4.
        inputs.append(helper.make_tensor_value_info("sid", TensorProto.INT64, [1]))
        nodes += [
            helper.make_node("Cast", ["sid"], ["sid_f"], to=TensorProto.FLOAT),
            const("quarter", 0.25),
            helper.make_node("Mul", ["sid_f", "quarter"], ["sid_q"]),
            const("unit", 1.0),
            helper.make_node("Add", ["sid_q", "unit"], ["speaker_gain"]),
            helper.make_node("Mul", ["hz0", "speaker_gain"], ["hz"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["hz0"], ["hz"]))
    nodes += [
        const("two_pi_over_sr", 2.0 * 3.141592653589793 / sample_rate),
        helper.make_node("Mul", ["hz", "two_pi_over_sr"], ["omega"]),  # [T, 1]
        helper.make_node("Mul", ["omega", "t_row"], ["phase"]),  # [T, L]
        helper.make_node("Sin", ["phase"], ["wave"]),
        const("amplitude", 0.5),
        helper.make_node("Mul", ["wave", "amplitude"], ["scaled"]),
        const("out_shape", [1, 1, -1], TensorProto.INT64, [3]),
        helper.make_node("Reshape", ["scaled", "out_shape"], ["output"]),  # [1, 1, T * L], as VITS exports
    ]
    graph = helper.make_graph(nodes, "tiny_piper", inputs,
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dramaforge-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)

    dir.mkdir(parents=True, exist_ok=True)
    onnx_path = dir / "tiny.onnx"
    onnx.save(model, str(onnx_path))
    id_map = {k: list(v) for k, v in DEFAULT_PHONEME_ID_MAP.items()}
    config = {
        "audio": {"sample_rate": sample_rate, "quality": "x_low"},
        "espeak": {"voice": "en-us"},
        "language": {"code": "en_US"},
        "phoneme_type": "espeak",
        "num_symbols": 1 + max(i for ids in id_map.values() for i in ids),
        "num_speakers": num_speakers,
        "speaker_id_map": {f"speaker{i}": i for i in range(num_speakers)} if num_speakers > 1 else {},
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_id_map": id_map,
        "piper_version": "1.8.0",
        "dataset": "tiny",
    }
    Path(f"{onnx_path}.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    return onnx_path
