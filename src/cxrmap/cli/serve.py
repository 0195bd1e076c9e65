"""``cxrmap serve``: the clinical demo page and JSON API on uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrmap.cli.options import backend_option, device_option
from cxrmap.core.errors import CheckpointError

MIB = 2**20


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""

    @app.command("serve")
    def serve(
        model: Path | None = typer.Option(
            None, "--model", help="Checkpoint to serve (default: the newest runs/*/model.pt here)."
        ),
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
        port: int = typer.Option(8000, help="TCP port."),
        workers: int = typer.Option(
            1, min=1, help="Threads decoding uploads and drawing maps (the model runs in one thread)."
        ),
        queue: int = typer.Option(8, min=0, help="Requests that may wait beyond --workers; beyond: 503."),
        batch_size: int = typer.Option(
            8,
            "--batch-size",
            min=1,
            help="Most requests run through the network together: those arriving while it is busy are "
            "batched (1: one at a time).",
        ),
        max_upload_mb: float = typer.Option(50.0, min=0.001, help="Largest upload in MiB."),
        max_megapixels: float = typer.Option(40.0, min=0.001, help="Largest image in megapixels."),
        device: str = device_option("cpu"),
        backend: str = backend_option(),
    ) -> None:
        """Serve the demo page (drop a chest X-ray, see its infection map) and the JSON API.

        The page is at http://HOST:PORT/, the API at /api/v1/predict and /api/v1/model.
        Research use only.
        """

        from cxrmap.predict.predictor import latest_model
        from cxrmap.serving.demo.app import create_app
        from cxrmap.serving.http.hosts import is_loopback, loopback_names
        from cxrmap.serving.http.middleware import serve, url_of

        if model is None:
            model = latest_model(Path.cwd())
            typer.secho(
                f"no --model given: serving the most recent run's model, {model}", fg=typer.colors.CYAN
            )
        elif not model.is_file():
            raise CheckpointError(
                f"--model {model} does not exist; give a checkpoint file (e.g. runs/NAME/model.pt)"
            )
        application = create_app(
            model,
            max_upload_bytes=int(max_upload_mb * MIB),
            max_pixels=int(max_megapixels * 1e6),
            workers=workers,
            max_queue=queue,
            device=device,
            allowed_hosts=loopback_names(host),
            backend=backend,
            batch_size=batch_size,
        )
        card = application.state.service.card
        typer.echo(
            f"model {card['arch']} + {card['encoder']} ({card['model_id']}), trained on: {card['trained_on']}"
        )
        typer.echo(f"inference backend {card['backend']}, batches of up to {batch_size} requests")
        if card["trained_on_phantoms"]:
            typer.secho(
                "warning: this model was trained on synthetic phantoms, not on patient images",
                fg=typer.colors.YELLOW,
            )
        if not is_loopback(host):
            typer.secho(
                f"warning: listening on {host}, reachable from the network; serve it behind an HTTPS reverse "
                "proxy with access control",
                fg=typer.colors.YELLOW,
            )
        typer.echo(f"open {url_of(host, port)}  (Ctrl+C to stop). Research use only.")
        serve(application, host, port, limit_concurrency=max(64, 4 * (workers + queue)))
