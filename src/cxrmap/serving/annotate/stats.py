"""Dashboard figures: progress per stage, machine vs manual choices, win rate per network, agreement
between reviewers (Fleiss' kappa, Dice between their masks), and a position-bias check.

Paper Sec. II-B reports the doctors preferring the machine mask over their own in three of five Stage I
cases, and drawing by hand for under 5% of the Stage II images: ``choices[stage]["machine_share"]``
measures the first figure, ``1 - machine_share`` in Stage II the second.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from sqlalchemy import select

from cxrmap.serving.annotate.db import Accepted, Candidate, Database, Image, Project, Review, Round
from cxrmap.serving.annotate.errors import not_found
from cxrmap.serving.annotate.jobs import list_jobs
from cxrmap.serving.annotate.masks import dice, load_mask
from cxrmap.serving.annotate.workflow import _labels, status_counts


def fleiss_kappa(ratings: list[list[str]]) -> float | None:
    """Fleiss' kappa of categorical ratings, one list of category names per subject (>= 2 ratings each).

    Subjects may have different numbers of raters (the per-subject agreement uses its own ``n_i``; the
    category shares pool all ratings). None when no subject has two ratings; 1.0 when every rating falls
    in one category.

    Example (Fleiss 1971 / Wikipedia's worked example gives 0.210):
        >>> round(fleiss_kappa([["a"] * 14]), 3)
        1.0
    """
    subjects = [r for r in ratings if len(r) >= 2]
    if not subjects:
        return None
    agreement = []
    totals: Counter = Counter()
    for subject in subjects:
        counts = Counter(subject)
        n = len(subject)
        agreement.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
        totals.update(counts)
    p_bar = float(np.mean(agreement))
    all_ratings = sum(totals.values())
    p_e = sum((c / all_ratings) ** 2 for c in totals.values())
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else None
    return (p_bar - p_e) / (1.0 - p_e)


def position_bias(choices: list[tuple[int, int]]) -> dict:
    """Choice rate per shown position and a chi-square test of "positions chosen uniformly at random".

    Args:
        choices: ``(chosen position, number of candidates shown)`` per review that chose a candidate.

    Returns:
        ``labels``, ``observed`` choices per position, ``expected`` ones (sum of 1/n over the reviews that
        showed the position), ``shown`` reviews that showed it, ``rate`` = observed / shown, ``chi2``,
        ``dof`` and ``p_value`` (None with fewer than 2 positions or no choice).
    """
    if not choices:
        return {
            "labels": [],
            "observed": [],
            "expected": [],
            "shown": [],
            "rate": [],
            "chi2": None,
            "dof": 0,
            "p_value": None,
        }
    width = max(n for _, n in choices)
    observed = np.zeros(width)
    expected = np.zeros(width)
    shown = np.zeros(width)
    for position, n in choices:
        observed[position] += 1
        expected[:n] += 1.0 / n
        shown[:n] += 1
    used = expected > 0
    chi2 = float((((observed - expected) ** 2)[used] / expected[used]).sum())
    dof = int(used.sum()) - 1
    p_value = None
    if dof >= 1:
        from scipy.stats import chi2 as chi2_distribution

        p_value = float(chi2_distribution.sf(chi2, dof))
    return {
        "labels": _labels(width),
        "observed": observed.astype(int).tolist(),
        "expected": np.round(expected, 3).tolist(),
        "shown": shown.astype(int).tolist(),
        "rate": np.round(np.divide(observed, shown, out=np.zeros(width), where=shown > 0), 4).tolist(),
        "chi2": round(chi2, 4),
        "dof": dof,
        "p_value": p_value,
    }


def _share(counts: dict) -> float | None:
    total = counts["model"] + counts["manual"] + counts["drawn"]
    return None if total == 0 else round(counts["model"] / total, 4)


def dashboard(db: Database, project_dir: str | Path, project_id: int, with_dice: bool = True) -> dict:
    """Every figure of the admin dashboard for one project (see the module notes and ANNOTATE API)."""
    project_dir = Path(project_dir)
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise not_found(f"project {project_id}")
        counts = status_counts(session, project_id)
        rounds = {r.id: r.stage for r in session.scalars(select(Round).where(Round.project_id == project_id))}
        candidates = {
            c.id: c
            for c in session.scalars(
                select(Candidate)
                .join(Image, Image.id == Candidate.image_id)
                .where(Image.project_id == project_id)
            )
        }
        reviews = session.scalars(
            select(Review)
            .join(Image, Image.id == Review.image_id)
            .where(Image.project_id == project_id, Review.status == "done")
            .order_by(Review.id)
        ).all()
        accepted = session.scalars(
            select(Accepted).join(Image, Image.id == Accepted.image_id).where(Image.project_id == project_id)
        ).all()
        images = session.execute(
            select(Image.id, Image.status, Image.round_id).where(Image.project_id == project_id)
        ).all()

    def source(review: Review) -> str:
        if review.decision != "choose":
            return "drawn"
        return candidates[review.choice_id].origin

    stages: dict[str, dict] = {}
    for stage in (1, 2):
        in_stage = [i for i in images if i.round_id is not None and rounds.get(i.round_id) == stage]
        stages[str(stage)] = {
            "images": len(in_stage),
            "accepted": sum(i.status == "accepted" for i in in_stage),
            "pending": sum(i.status == "pending" for i in in_stage),
            "reviews_done": sum(rounds[r.round_id] == stage for r in reviews),
        }
    choices: dict[str, dict] = {}
    for stage in (1, 2):
        final = Counter(
            "drawn" if a.decision == "reject" else candidates[a.candidate_id].origin
            for a in accepted
            if a.stage == stage
        )
        every = Counter(source(r) for r in reviews if rounds[r.round_id] == stage)
        block = {key: int(final.get(key, 0)) for key in ("model", "manual", "drawn")}
        block["machine_share"] = _share(block)
        reviews_block = {key: int(every.get(key, 0)) for key in ("model", "manual", "drawn")}
        reviews_block["machine_share"] = _share(reviews_block)
        block["reviews"] = reviews_block
        choices[str(stage)] = block
    shown: Counter = Counter()
    won: Counter = Counter()
    for review in reviews:
        stage = rounds[review.round_id]
        for candidate_id in review.order:
            candidate = candidates[candidate_id]
            if candidate.origin == "model":
                shown[(stage, candidate.model)] += 1
        if review.decision == "choose" and candidates[review.choice_id].origin == "model":
            won[(stage, candidates[review.choice_id].model)] += 1
    networks = [
        {
            "stage": stage,
            "model": model,
            "shown": n,
            "chosen": won[(stage, model)],
            "win_rate": round(won[(stage, model)] / n, 4),
        }
        for (stage, model), n in sorted(shown.items())
    ]
    by_image: dict[tuple[int, int], list[Review]] = defaultdict(list)
    for review in reviews:
        by_image[(review.image_id, review.round_id)].append(review)
    multi = [group for group in by_image.values() if len(group) >= 2]
    # categories shared by all images: the chosen candidate's source (one candidate per source per image)
    ratings = [
        [(candidates[r.choice_id].model or "manual") if r.decision == "choose" else "drawn" for r in group]
        for group in multi
    ]
    pairwise = []
    if with_dice:
        for group in multi:
            masks = [
                load_mask(
                    project_dir, candidates[r.choice_id].mask_path if r.decision == "choose" else r.drawn_path
                )
                for r in group
            ]
            pairwise += [dice(a, b) for a, b in itertools.combinations(masks, 2)]
    kappa = fleiss_kappa(ratings)
    agreement = {
        "images": len(multi),
        "reviews": sum(len(g) for g in multi),
        "fleiss_kappa": None if kappa is None else round(kappa, 4),
        "mean_pairwise_dice": round(float(np.mean(pairwise)), 4) if pairwise else None,
    }
    bias = position_bias([(r.choice_position, len(r.order)) for r in reviews if r.decision == "choose"])
    return {
        "project": {"id": project.id, "name": project.name, "reviews_per_image": project.reviews_per_image},
        "progress": {
            "total": counts["total"],
            "accepted": counts["accepted"],
            "pending": counts["pending"],
            "unannotated": counts["new"],
            "stages": stages,
        },
        "choices": choices,
        "networks": networks,
        "agreement": agreement,
        "position_bias": bias,
        "jobs": list_jobs(db, project_id, limit=10),
    }
