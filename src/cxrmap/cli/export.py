"""``cxrmap export``: a checkpoint as an ONNX model (fp32, or statically quantised int8) to run fast."""

from __future__ import annotations

from pathlib import Path

import typer

FORMATS = ("onnx", "onnx-int8")


def register(app: typer.Typer) -> None:
    """Add ``cxrmap export`` to ``app``."""

    @app.command("export")
    def export(
        checkpoint: Path = typer.Argument(..., help="Checkpoint (model.pt) to export.", show_default=False),
        out: Path = typer.Option(..., "--out", "-o", help="The .onnx file to write."),
        format: str = typer.Option("onnx", "--format", help="onnx (fp32) or onnx-int8 (static int8, QDQ)."),
        calibration: Path | None = typer.Option(
            None,
            "--calibration",
            help="Manifest CSV whose training images (rows not split val or test) calibrate onnx-int8. "
            "Default: phantom radiographs.",
        ),
        images: int = typer.Option(32, "--calibration-images", min=1, help="Calibration images to use."),
    ) -> None:
        """Write CHECKPOINT as an ONNX model that carries the checkpoint's metadata.

        The file is a model of its own: `cxrmap predict --model FILE.onnx` and the servers run it with ONNX
        Runtime. The export is checked against the eager network (parity gate: pixel F1 within 0.5 points,
        the same detection decision for 99% of held-out images) and the figures printed.
        """
        import numpy as np

        from cxrmap.core.errors import DataError
        from cxrmap.core.fileio import write_bytes_atomic
        from cxrmap.models.checkpoint import load_model
        from cxrmap.predict import backends

        if format not in FORMATS:
            raise DataError(f"unknown export format {format!r}; use {' or '.join(FORMATS)}")
        if out.suffix.lower() != ".onnx":
            raise DataError(f"the output file must end in .onnx (got {out}); e.g. --out model.onnx")
        model, meta = load_model(checkpoint)
        size = meta.input_size
        data = backends.export_onnx(model, meta)
        if format == "onnx-int8":
            if calibration is not None:
                from cxrmap.data.cache import build_cache
                from cxrmap.data.manifest import read_manifest

                manifest = read_manifest(calibration)
                manifest = manifest[~manifest["split"].astype(str).isin(("val", "test"))]
                if manifest.empty:
                    raise DataError(f"{calibration} has no training rows (all are split val or test)")
                cache = build_cache(manifest, size, progress=False)
                rows = np.linspace(0, len(cache) - 1, min(images, len(cache))).round().astype(int)
                chosen = np.asarray(cache.images[np.unique(rows)])
                source = f"{len(chosen)} training images of {calibration}"
            else:
                chosen = backends.phantom_set(size, images, backends.CALIBRATION_SEED)[0]
                source = f"{len(chosen)} phantom images"
            typer.echo(f"calibrating int8 on {source}")
            data = backends.quantize_int8(data, chosen)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out, data)
        held_out, masks = backends.phantom_set(size, backends.GATE_IMAGES, backends.GATE_SEED)
        infection = list(meta.channels).index("infection")
        reference = backends.TorchBackend(model).probabilities(held_out)[:, infection]
        candidate, _ = backends.load_onnx(out)
        result = backends.parity(
            reference,
            candidate.probabilities(held_out)[:, infection],
            masks,
            meta.threshold,
            format,
        )
        typer.echo(f"wrote {out} ({format}, {len(data) / 2**20:.1f} MiB, metadata of {checkpoint} inside)")
        verdict = "passed" if result.passed else f"FAILED: {result.reason}"
        typer.echo(
            f"parity against eager fp32 on {len(held_out)} phantom images: pixel F1 {result.f1_delta:+.2f} "
            f"points, same decision on {100 * result.agreement:.1f}%; {verdict}"
        )
