"""``qa-search dedupe``: clusters of existing threads that duplicate each other."""

from __future__ import annotations

from collections.abc import Callable

import click

from qa_search import DEFAULT_NEIGHBOURS, DedupeResult, ForumIndex, find_duplicate_clusters
from qa_search.cli._common import FiniteRange, echo_json, library_errors
from qa_search.cli._input import StepBar


def _threshold(
    index: ForumIndex, index_dir: str, min_probability: float | None, min_cosine: float | None
) -> tuple[float | None, str | None]:
    """``(threshold, by)``: what to cluster on and from which score up (None: the library's
    defaults); a probability asked of an index with no calibration is an error."""
    _, scorer = index.duplicate_cutoff()
    if scorer == "cosine" and min_probability is not None:  # the index's state: status 1
        raise click.ClickException(
            f"{index_dir} is not calibrated, so it has no probabilities: its duplicate scores are "
            f"raw question cosines. Calibrate it first (qa-search calibrate {index_dir} --pairs FILE), "
            "or give a cosine threshold with --min-cosine."
        )
    if min_probability is not None:
        return min_probability, "probability"
    return min_cosine, None if min_cosine is None else "cosine"


def _closing(bar: StepBar) -> Callable[[int, int], None]:
    """``bar`` as a callback that closes it once its step is done, before the next bar opens."""

    def report(done: int, total: int) -> None:
        bar(done, total)
        if done >= total and bar.bar is not None:
            bar.bar.close()

    return report


def _print(result: DedupeResult, index_dir: str) -> None:
    what = result.by
    n_threads = sum(len(c.threads) for c in result.clusters)
    click.echo(
        f"{len(result.clusters)} duplicate cluster(s) holding {n_threads} of {result.threads} threads; "
        f"clustered by {'calibrated probability' if result.by == 'probability' else 'raw question cosine'}, "
        f"threshold {result.threshold:.3f} ({result.linkage} linkage, {result.neighbours} neighbours), "
        f"{result.seconds:.1f} s"
    )
    # where no clustered thread has a vote (an export without thread votes, such as CounselChat's),
    # "0 vote(s)" on every line would say nothing
    votes = any(t.votes for c in result.clusters for t in c.threads)
    for rank, c in enumerate(result.clusters, 1):
        click.echo(
            f"\n{rank}. {len(c.threads)} threads, mean {what} {c.mean_score:.3f} "
            f"(lowest pair {c.min_score:.3f})"
        )
        to_canon = {
            p.id1 if p.id2 == c.canonical else p.id2: p for p in c.pairs if c.canonical in (p.id1, p.id2)
        }
        for t in c.threads:
            facts = f"{t.answers} answer(s), {t.votes} vote(s)" if votes else f"{t.answers} answer(s)"
            if t.thread_id == c.canonical:
                click.echo(f"   keep  [{t.thread_id}] {t.title}  ({facts})")
                continue
            pair = to_canon[t.thread_id]
            score = f"p={pair.score:.3f}" if result.by == "probability" else f"cos={pair.score:.3f}"
            if result.by == "cosine" and pair.probability is not None:
                score += f", p={pair.probability:.3f}"
            click.echo(f"   merge [{t.thread_id}] {t.title}  ({facts}; {score})")


@click.command()
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.option(
    "--min-probability",
    type=FiniteRange(0, 1),
    default=None,
    help=(
        "Cluster on the calibrated duplicate probability from this value up. Default: on an index "
        "with no calibration of its own, using the one shipped for its model, probability from its "
        "\"related\" tier; otherwise raw cosine."
    ),
)
@click.option(
    "--min-cosine",
    type=FiniteRange(-1, 1),
    default=None,
    help="Cluster on raw question cosine from this value up [default: the index's duplicate_threshold].",
)
@click.option(
    "--neighbours",
    default=DEFAULT_NEIGHBOURS,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Nearest questions of each question that are scored as candidate duplicates.",
)
@click.option(
    "--linkage",
    type=click.Choice(["average", "complete"]),
    default=None,
    help="average: a cluster's pairs reach the threshold on average; complete: every pair does "
    "[default: complete on the probabilities of a shipped calibration, else average].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the clusters as JSON.")
@library_errors
def dedupe(
    index_dir: str,
    min_probability: float | None,
    min_cosine: float | None,
    neighbours: int,
    linkage: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Find clusters of threads that duplicate each other, each with a thread to keep.

    Every question's nearest questions are scored (raw question cosine, or the calibrated
    probability: with --min-probability, and by default where the index uses the calibration
    shipped for its model), and pairs at or above the threshold are grouped so that a cluster's
    pairs reach it on average, or with complete linkage every pair does (no chaining through a
    path of loosely similar questions). On a calibrated index every pair also shows its
    duplicate probability. The suggested thread to keep is the most answered, then the most
    voted.
    """
    if min_probability is not None and min_cosine is not None:  # before the model loads
        raise click.UsageError("give --min-probability or --min-cosine, not both")
    index = ForumIndex.load(index_dir)
    threshold, by = _threshold(index, index_dir, min_probability, min_cosine)
    if index.calibration is None and index.duplicate_cutoff()[1] == "calibrated":
        click.echo(
            f"note: {index_dir} has no calibration of its own: probabilities come from the one shipped "
            f"for its model. `qa-search calibrate {index_dir} --pairs FILE` fits the forum's own.",
            err=True,
        )
    elif index.calibration is None:
        click.echo(
            f"warning: {index_dir} is not calibrated: pairs have raw question cosines, no probabilities "
            f"(threshold {index.config.duplicate_threshold if threshold is None else threshold:.3f}). "
            f"`qa-search calibrate {index_dir} --pairs FILE` fits probabilities.",
            err=True,
        )
    with (
        StepBar("neighbours", quiet, unit="questions") as sbar,
        StepBar("scoring", quiet, unit="pairs") as pbar,
    ):
        result = find_duplicate_clusters(
            index,
            threshold,
            neighbours=neighbours,
            linkage=linkage,
            by=by,
            search_progress=_closing(sbar),
            score_progress=pbar,
        )
    own = index.calibration
    if own is not None and by is None and result.by == "cosine":
        # the forum's own calibration makes raw cosine the default (it clustered better on
        # Quora), and a cosine cut that suits one-line questions can find nothing on a forum of
        # reworded titles and bodies: say what the probabilities would take
        click.echo(
            f"note: clustered on raw question cosine from the index's duplicate_threshold "
            f"({result.threshold:.3f}), the default on an index with a calibration of its own; "
            f"--min-probability {own.tiers['duplicate']:.3f} (its \"duplicate\" tier) clusters on its "
            "probabilities, --min-cosine C from another cosine",
            err=True,
        )
    if as_json:
        echo_json(result.to_dict())
        return
    _print(result, index_dir)
