"""``lenet-edge quantize``."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from lenet_edge.commands._common import (
    count,
    data_dir_option,
    out_option,
    quiet_option,
    seed_option,
)
from lenet_edge.quantize import DEFAULT_CALIBRATION_SAMPLES, IO_TYPES, quant_json_path

EPILOG = (
    "Writes OUT and its quantization record beside it, named after it (model_int8.tflite -> "
    "model_int8.quant.json: op list; every tensor's name, shape, dtype, "
    "scales and zero points; size; SHA-256; the command line). The same model, options and "
    "seed give a byte-identical .tflite. Fails, writing nothing, if the graph would need any "
    "float op or if the C3 connection mask does not survive as exact zeros."
)


def _command_line(
    model: Path,
    out: Path,
    quant_json: Path | None,
    samples: int,
    seed: int,
    per_tensor: bool,
    io_type: str,
    data_dir: str | None,
) -> str:
    args = [
        "lenet-edge",
        "quantize",
        str(model),
        "--out",
        str(out),
        "--calibration-samples",
        str(samples),
        "--seed",
        str(seed),
        "--io",
        io_type,
    ]
    if per_tensor:
        args.append("--per-tensor")
    if quant_json is not None:
        args += ["--quant-json", str(quant_json)]
    if data_dir:
        args += ["--data-dir", data_dir]
    return shlex.join(args)


@click.command("quantize", epilog=EPILOG)
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@out_option("Output .tflite file.", directory=False)
@click.option(
    "--calibration-samples",
    type=count(1, 55000),
    default=DEFAULT_CALIBRATION_SAMPLES,
    show_default=True,
    help="Representative images drawn with --seed from the training split (never "
    "validation or test). The default was chosen by measuring int8 validation "
    "accuracy against N.",
)
@click.option(
    "--per-tensor",
    is_flag=True,
    help="One weight scale per tensor instead of per output channel (the default).",
)
@click.option(
    "--io",
    "io_type",
    type=click.Choice(IO_TYPES),
    default="int8",
    show_default=True,
    help="Type of the model input and output tensors; the graph is int8 inside "
    "either way (float32 adds a QUANTIZE at the input and a DEQUANTIZE at the output).",
)
@click.option(
    "--quant-json",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    show_default="OUT with .quant.json for .tflite",
    help="Where to write the quantization record.",
)
@click.option(
    "--check-determinism",
    is_flag=True,
    help="Convert twice and fail unless both flatbuffers are byte-identical.",
)
@seed_option
@data_dir_option
@quiet_option
def command(
    model: Path,
    out: Path,
    calibration_samples: int,
    per_tensor: bool,
    io_type: str,
    quant_json: Path | None,
    check_determinism: bool,
    seed: int,
    data_dir: str | None,
    quiet: bool,
) -> None:
    """Quantize a Keras LeNet (MODEL.keras) to a full-int8 .tflite.

    Post-training quantization with TensorFlow's TFLite converter, a fixed batch of 1 and
    int8 builtin ops only: int8 weights (per-channel by default) and activations, int32
    biases.
    """
    from lenet_edge import data
    from lenet_edge.errors import LenetEdgeError, ModelFileError
    from lenet_edge.fsutil import atomic_path, check_output_file, json_bytes
    from lenet_edge.interpreters import check_keras_file

    # Validate everything cheap before loading TensorFlow.
    check_keras_file(model)
    if out.suffix.lower() in (".keras", ".h5", ".json"):
        raise click.UsageError(f"--out {out} should be a .tflite path")
    record_path = quant_json if quant_json is not None else quant_json_path(out)
    if record_path.resolve() == out.resolve():  # two outputs (the inputs: the one check)
        raise click.UsageError("--quant-json must differ from the model and --out")
    check_output_file(out, [("the input model", model)])
    check_output_file(record_path, [("the model", model)], option="--quant-json")
    mnist = data.load(data_dir)

    from lenet_edge.model import keras_input_shape, load_keras_model
    from lenet_edge.quantize import check_finite_weights, quant_record, quantize_keras
    from lenet_edge.verify import NUM_CLASSES, image_side

    keras_model = load_keras_model(model)
    check_finite_weights(keras_model, model)
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise ModelFileError(f"{model}: expected one input and one output")
    image_side(keras_input_shape(keras_model))
    if keras_model.outputs[0].shape[-1] != NUM_CLASSES:
        raise ModelFileError(
            f"{model}: the output has {keras_model.outputs[0].shape[-1]} "
            f"values, expected {NUM_CLASSES} classes"
        )
    if not quiet:
        click.echo(
            f"quantizing {model} with {calibration_samples} calibration images "
            f"(seed {seed}, {'per-tensor' if per_tensor else 'per-channel'} weights, "
            f"{io_type} I/O)",
            err=True,
        )
    flat, tfl, masks = quantize_keras(
        keras_model,
        mnist.x_train,
        calibration_samples=calibration_samples,
        seed=seed,
        per_channel=not per_tensor,
        io_type=io_type,
        check_determinism=check_determinism,
    )
    record = quant_record(
        tfl,
        masks,
        command=_command_line(
            model, out, quant_json, calibration_samples, seed, per_tensor, io_type, data_dir
        ),
        source=model,
        output=out,
        calibration_samples=min(calibration_samples, len(mnist.x_train)),
        calibration_pool=len(mnist.x_train),
        seed=seed,
        per_channel=not per_tensor,
        io_type=io_type,
    )
    # Both files are complete on disk before either is renamed into place, so a failure or
    # an interrupt leaves the previous pair (or none) as it was.
    try:
        with atomic_path(out) as tmp_out, atomic_path(record_path) as tmp_record:
            tmp_out.write_bytes(flat)
            tmp_record.write_bytes(json_bytes(record))
    except OSError as exc:
        failed = exc.filename or out
        raise LenetEdgeError(
            f"cannot write {failed}: {exc.strerror or exc}; nothing was written"
        ) from None

    i, o = tfl.input, tfl.output
    click.echo(f"{model} -> {out}: {tfl.size:,} bytes, sha256 {tfl.sha256}")
    click.echo(f"  ops     {', '.join(tfl.op_names)} (all int8 builtins)")
    click.echo(
        f"  input   {list(i.shape)} {i.dtype}"
        + (f" scale {i.scale:.8g} zero point {i.zero_point}" if i.quantized else "")
    )
    click.echo(
        f"  output  {list(o.shape)} {o.dtype}"
        + (f" scale {o.scale:.8g} zero point {o.zero_point}" if o.quantized else "")
    )
    for m in masks:
        click.echo(
            f"  {m['layer']} mask: {m['masked_weights']} masked weights, all exactly 0 in "
            f"the int8 kernel ({m['nonzero_kept_weights']} of "
            f"{m['weights'] - m['masked_weights']} kept weights non-zero)"
        )
    if check_determinism:
        click.echo("  determinism: two conversions gave byte-identical flatbuffers")
    click.echo(f"  record  {record_path}")
