"""``cxrmap annotate ...``: the collaborative human-machine annotation server and its admin commands.

Paper Sec. II-B (Fig. 4). A server folder (``--project DIR``) holds the database (SQLite
``DIR/annotate.db`` unless ``--db URL``), the secret key, the masks, the jobs' work and the exports; it may
hold several projects (data sets), addressed by ``--name``. The commands that start work (import, stage1,
stage2) run it here and now by default, or only queue it for the running server with ``--background``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

PROJECT = typer.Option(..., "--project", help="The server's folder (database, secret key, masks, exports).")
DB = typer.Option(
    None,
    "--db",
    help="Database URL (default: SQLite DIR/annotate.db); e.g. postgresql+psycopg://user@localhost/annotate",
)
NAME = typer.Option(..., "--name", help="Project name.")
BACKGROUND = typer.Option(
    False, "--background", help="Only queue the job; the running server's worker runs it."
)


def _open(project: Path, db: str | None):
    from cxrmap.serving.annotate.db import Database, default_url

    project.mkdir(parents=True, exist_ok=True)
    return Database(db or default_url(project))


def _project_id(database, name: str) -> int:
    from sqlalchemy import select

    from cxrmap.core.errors import DataError
    from cxrmap.serving.annotate.db import Project

    with database.session() as session:
        found = session.scalar(select(Project.id).where(Project.name == name))
        if found is None:
            names = ", ".join(session.scalars(select(Project.name).order_by(Project.name))) or "none yet"
            raise DataError(
                f"no project named {name!r} (projects: {names}); create it with `cxrmap annotate import`"
            )
    return found


def _run(database, project: Path, job_id: int, background: bool) -> dict:
    """Run the queued job now (unless ``background``), printing its progress; raise if it failed."""
    from cxrmap.core.errors import CxrmapError
    from cxrmap.serving.annotate import jobs
    from cxrmap.serving.annotate.training import cxrmap_trainer

    if background:
        typer.echo(f"queued job {job_id}; the server's worker will run it (see `cxrmap annotate status`)")
        return jobs.get_job(database, job_id)
    if not jobs.claim(database, job_id):
        return jobs.get_job(database, job_id)

    def listener(fraction: float, message: str) -> None:
        typer.echo(f"[{100 * fraction:5.1f}%] {message}")

    job = jobs.run_job(database, project, cxrmap_trainer, job_id, listener=listener)
    if job["state"] != "done":
        raise CxrmapError(f"job {job_id} ({job['kind']}) {job['state']}: {job['error']}")
    return job


def _training(size, epochs, batch_size, lr, threads) -> dict:
    values = {"size": size, "epochs": epochs, "batch_size": batch_size, "lr": lr, "threads": threads}
    return {k: v for k, v in values.items() if v is not None}


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


def register(app: typer.Typer) -> None:
    """Add the ``annotate`` command group to ``app``."""
    group = typer.Typer(
        help="Collaborative human-machine annotation (paper Sec. II-B): server, projects, "
        "stages, export, simulation.",
        no_args_is_help=True,
    )
    app.add_typer(group, name="annotate")

    @group.command("serve")
    def serve(
        project: Path = PROJECT,
        db: str = DB,
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
        port: int = typer.Option(8100, help="TCP port."),
        secure_cookies: bool = typer.Option(
            False, "--secure-cookies", help="Mark cookies Secure (serve behind an HTTPS proxy)."
        ),
        max_upload_mb: float = typer.Option(64.0, min=0.01, help="Largest request body in MiB."),
    ) -> None:
        """Serve the review pages (/login, /review, /admin, /dashboard) and the JSON API (/api/v1).

        The first start creates the database and a private secret key (DIR/secret.key, mode 0600). There are
        no default accounts: create the first admin with `cxrmap annotate create-user --role admin`.
        """

        from cxrmap.serving.annotate.app import create_app
        from cxrmap.serving.http.hosts import is_loopback, loopback_names
        from cxrmap.serving.http.middleware import serve, url_of

        application = create_app(
            project,
            db,
            secure_cookies=secure_cookies,
            max_upload_bytes=int(max_upload_mb * 2**20),
            allowed_hosts=loopback_names(host),
        )
        if not is_loopback(host) and not secure_cookies:
            typer.secho(
                f"warning: listening on {host} without --secure-cookies; serve it behind an HTTPS "
                "reverse proxy (it sends X-Forwarded-Proto)",
                fg=typer.colors.YELLOW,
            )
        typer.echo(f"open {url_of(host, port, '/login')}  (Ctrl+C to stop). Research use only.")
        serve(application, host, port)

    @group.command("create-user")
    def create_user(
        project: Path = PROJECT,
        db: str = DB,
        username: str = typer.Option(..., "--username", help="Login name (letters, digits, _ . @ -)."),
        role: str = typer.Option("reviewer", "--role", help="admin or reviewer."),
        password_stdin: bool = typer.Option(
            False, "--password-stdin", help="Read the password from the first line of stdin (else a prompt)."
        ),
    ) -> None:
        """Create an account; the password comes from a hidden prompt or stdin, never from an argument."""
        from cxrmap.serving.annotate import auth

        database = _open(project, db)
        auth.load_or_create_secret(project)
        user_id = auth.create_user(
            database, auth.make_hasher(), username, _read_password(password_stdin), role
        )
        typer.echo(f"created {role} {username} (id {user_id})")

    @group.command("import")
    def import_project(
        project: Path = PROJECT,
        db: str = DB,
        name: str = NAME,
        images: Path = typer.Option(None, "--images", help="Folder of radiographs."),
        masks: Path = typer.Option(
            None, "--masks", help="Folder of the doctors' manual masks (X.png or mask_X.png)."
        ),
        tree: Path = typer.Option(
            None, "--tree", help="QaTa-COV19 (Images/ + Ground-truths/) or COVID-QU-Ex tree."
        ),
        reviews_per_image: int = typer.Option(1, min=1, max=20, help="Reviews before a mask is accepted."),
        background: bool = BACKGROUND,
    ) -> None:
        """Create a project from a folder (--images [--masks]) or a tree `cxrmap index` reads (--tree:
        QaTa-COV19 v1/v2 or COVID-QU-Ex). A failed import leaves no project behind."""
        from cxrmap.core.errors import DataError
        from cxrmap.serving.annotate import jobs, projects

        if (images is None) == (tree is None):
            raise DataError("give either --images DIR (with optional --masks DIR) or --tree ROOT")
        source = (
            {"kind": "folder", "images": str(images), "masks": str(masks) if masks else None}
            if images is not None
            else {"kind": "tree", "root": str(tree)}
        )
        database = _open(project, db)
        project_id = projects.create_project(database, name, source, reviews_per_image)
        try:
            job = _run(database, project, jobs.enqueue(database, project_id, "import", {}), background)
        except BaseException:  # a failed or interrupted import leaves no project behind
            projects.delete_project(database, project, project_id)
            raise
        result = job.get("result") or {}
        if result:
            typer.echo(f"project {name}: {result['total']} images, {result['with_manual']} with manual masks")
            for warning in result.get("warnings", [])[:20]:
                typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW)

    def stage_command(
        stage: int,
        project,
        db,
        name,
        networks,
        folds,
        limit,
        size,
        epochs,
        batch_size,
        lr,
        threads,
        seed,
        background,
    ) -> None:
        from cxrmap.serving.annotate import jobs, workflow

        database = _open(project, db)
        project_id = _project_id(database, name)
        body = {
            "networks": networks,
            "folds": folds,
            "limit": limit,
            "seed": seed,
            "training": _training(size, epochs, batch_size, lr, threads),
        }
        params = workflow.stage_params(database, project_id, stage, body)
        job = _run(database, project, jobs.enqueue(database, project_id, f"stage{stage}", params), background)
        if job["state"] == "done":
            typer.echo(f"Stage {'I' * stage}: {job['result'].get('images', 0)} images wait for review")

    @group.command("stage1")
    def stage1(
        project: Path = PROJECT,
        db: str = DB,
        name: str = NAME,
        networks: str = typer.Option(
            "unet:densenet121,unetplusplus:densenet121,dla:densenet121",
            help="Comma-separated arch:encoder list (paper: three networks).",
        ),
        folds: int = typer.Option(
            None, help="Cross-validation folds (default: 5, the paper's scheme; the API's default too)."
        ),
        size: int = typer.Option(None, help="Training image size (default 96)."),
        epochs: int = typer.Option(None, help="Epochs per network (default 8)."),
        batch_size: int = typer.Option(None, help="Batch size (default 8)."),
        lr: float = typer.Option(None, help="Learning rate (default 1e-3)."),
        threads: int = typer.Option(None, help="torch CPU threads during training."),
        seed: int = typer.Option(0, help="Seed of the folds and the training."),
        background: bool = BACKGROUND,
    ) -> None:
        """Stage I: train the networks in k-fold cross-validation on the manual masks; queue the reviews."""
        stage_command(
            1,
            project,
            db,
            name,
            networks,
            folds,
            None,
            size,
            epochs,
            batch_size,
            lr,
            threads,
            seed,
            background,
        )

    @group.command("stage2")
    def stage2(
        project: Path = PROJECT,
        db: str = DB,
        name: str = NAME,
        networks: str = typer.Option(
            "unet:densenet121,unetplusplus:densenet121,dla:densenet121,unet:resnet50,dla:inception_v3",
            help="Comma-separated arch:encoder list (paper: five networks).",
        ),
        limit: int = typer.Option(None, help="Predict at most this many unannotated images in this run."),
        size: int = typer.Option(None, help="Training image size (default 96)."),
        epochs: int = typer.Option(None, help="Epochs per network (default 8)."),
        batch_size: int = typer.Option(None, help="Batch size (default 8)."),
        lr: float = typer.Option(None, help="Learning rate (default 1e-3)."),
        threads: int = typer.Option(None, help="torch CPU threads during training."),
        seed: int = typer.Option(0, help="Seed of the training."),
        background: bool = BACKGROUND,
    ) -> None:
        """Stage II: train on the accepted masks, predict the unannotated images; queue the reviews."""
        stage_command(
            2, project, db, name, networks, 3, limit, size, epochs, batch_size, lr, threads, seed, background
        )

    @group.command("status")
    def status(
        project: Path = PROJECT,
        db: str = DB,
        name: str = typer.Option(None, "--name", help="One project (default: all)."),
    ) -> None:
        """Progress per project and stage, the doctors' choices, and the recent jobs."""
        import json

        from sqlalchemy import select

        from cxrmap.serving.annotate import stats
        from cxrmap.serving.annotate.db import Project

        database = _open(project, db)
        with database.session() as session:
            rows = session.execute(select(Project.id, Project.name).order_by(Project.id)).all()
        for project_id, project_name in rows:
            if name is not None and project_name != name:
                continue
            board = stats.dashboard(database, project, project_id, with_dice=False)
            typer.echo(
                json.dumps(
                    {
                        "project": project_name,
                        "progress": board["progress"],
                        "choices": board["choices"],
                        "jobs": [
                            {k: j[k] for k in ("id", "kind", "state", "progress", "message", "error")}
                            for j in board["jobs"][:5]
                        ],
                    },
                    indent=2,
                )
            )

    @group.command("export")
    def export(
        project: Path = PROJECT,
        db: str = DB,
        name: str = NAME,
        out: Path = typer.Option(..., "--out", help="New folder for the QaTa-COV19-style export."),
    ) -> None:
        """Export the accepted masks (QaTa-COV19-v1/{Images,Ground-truths}) and provenance.csv (manifest)."""
        from cxrmap.serving.annotate.export import export_project

        database = _open(project, db)
        result = export_project(database, project, _project_id(database, name), out)
        typer.echo(
            f"exported {result['images']} images to {result['path']}; provenance: {result['provenance']}"
        )
        typer.echo(
            f"next: cxrmap index {result['path']} --out manifest.csv   or   "
            f"cxrmap train --manifest {result['provenance']} --out runs/annotated"
        )

    @group.command("simulate")
    def simulate(
        out: Path = typer.Option(..., "--out", help="New folder: data, server, export, simulation.json."),
        images: int = typer.Option(48, min=6, help="COVID-19 phantoms in the project."),
        manual_share: float = typer.Option(0.5, min=0.1, max=1.0, help="Share with hurried manual masks."),
        size: int = typer.Option(64, help="Image and training size in pixels (multiple of 32, >= 64)."),
        stage1_networks: str = typer.Option(
            "unet:tu-resnet10t,unetplusplus:tu-resnet10t,dla:tu-resnet10t",
            help="Stage I networks (arch:encoder, comma-separated).",
        ),
        stage2_networks: str = typer.Option(
            "unet:tu-resnet10t,unetplusplus:tu-resnet10t,dla:tu-resnet10t,unet:tu-mobilenetv3_small_050,"
            "dla:tu-mobilenetv3_small_050",
            help="Stage II networks.",
        ),
        folds: int = typer.Option(3, help="Stage I folds."),
        epochs: int = typer.Option(20, help="Epochs per network (batch size 4)."),
        reviewers: int = typer.Option(2, min=1, help="Simulated reviewers."),
        reviews_per_image: int = typer.Option(2, min=1, help="Reviews before a mask is accepted."),
        dice_floor: float = typer.Option(0.6, help="A reviewer rejects all and draws below this Dice."),
        threads: int = typer.Option(None, help="torch CPU threads (1 is fastest on a busy machine)."),
        seed: int = typer.Option(0, help="Seed of everything."),
    ) -> None:
        """Run the whole workflow on phantoms with simulated reviewers through the API; write simulation.json.

        Defaults (5-8 minutes on two CPU cores; use --threads 1 when the cores are busy): 48 COVID-19
        phantoms at 64 px, half of them with hurried "manual" masks (true masks dilated/eroded, shifted,
        with wobbly outlines and holes); Stage I: U-Net, UNet++ and DLA with a ResNet-10-T encoder (timm
        resnet10t, random weights) in 3 folds; Stage II: five networks (those three plus U-Net and DLA with
        MobileNet-v3-small-0.5); 20 epochs of batch 4 each; two reviewers who choose the candidate closest
        (Dice) to the true mask, or reject all below a Dice of 0.6 and draw it (small noise); each image is
        reviewed by both (the dashboard's agreement figures).
        simulation.json reports manual_dice, final_dice, machine_share_stage1, machine_share_stage2.
        """
        from cxrmap.serving.annotate.simulate import SimulationConfig, run_simulation

        config = SimulationConfig(
            n_images=images,
            manual_share=manual_share,
            size=size,
            stage1_networks=stage1_networks,
            stage2_networks=stage2_networks,
            folds=folds,
            epochs=epochs,
            reviewers=reviewers,
            reviews_per_image=reviews_per_image,
            dice_floor=dice_floor,
            threads=threads,
            seed=seed,
        )
        result = run_simulation(out, config, log=typer.echo)
        typer.echo(f"wrote {out / 'simulation.json'} ({result['wall_time_s']} s)")
