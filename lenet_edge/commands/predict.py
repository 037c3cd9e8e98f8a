"""``lenet-edge predict``."""

from __future__ import annotations

from pathlib import Path

import click

from lenet_edge.commands._common import check_json_output, json_option, json_to_stdout, write_json

EPILOG = (
    "Preprocessing, as MNIST's: grayscale; dark ink on a light background is inverted (the "
    "background is read from the picture's border); the contrast is stretched; crop to the "
    "ink; scale into a 20x20 box keeping the aspect ratio (anti-aliased); centre by centre of "
    "mass in 28x28; then the one preprocessing of training (pad to 32x32, scale to [0, 1]). "
    "Every picture is checked before the model is loaded. Exit status: 0 classified, 1 a "
    "picture or the model is unusable, 2 usage error."
)


@click.command("predict", epilog=EPILOG)
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option("Write the predictions as JSON to FILE.")
def command(model: Path, images: tuple[Path, ...], json_out: Path | None) -> None:
    """Classify digit pictures (PNG, JPG, ...; any size, colour or grayscale, either polarity)
    with MODEL, a .keras model from `train` or a .tflite (int8 or float) from `quantize`.

    Prints each picture's class and its three most probable classes.
    """
    from lenet_edge.predict import check_model_file, classify, load_digits, prediction_record

    check_json_output(json_out, model, *images)
    checked = check_model_file(model)  # cheap checks, no TensorFlow
    digits = load_digits(list(images))

    import numpy as np

    probs, how = classify(checked, np.stack([d.image for d in digits]))
    records = [prediction_record(d, p) for d, p in zip(digits, probs, strict=True)]
    if json_out is not None:
        doc = {"model": str(model), "computed_with": how, "predictions": records}
        write_json(json_out, doc)
        if json_to_stdout(json_out):
            return
    width = max(len(r["image"]) for r in records)
    for r in records:
        top = ", ".join(f"{t['class']} {t['probability']:.4f}" for t in r["top3"])
        click.echo(f"{r['image']:<{width}}  {r['class']}   top-3: {top}")
