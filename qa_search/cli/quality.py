"""``qa-search eval`` and ``qa-search calibrate``: measuring an index and calibrating duplicates."""

from __future__ import annotations

import click

from qa_search import (
    ForumIndex,
    UnknownThreadError,
    calibrate_index,
    check_targets,
    evaluate_pairs,
    evaluate_queries,
    locate_unknown,
    read_pairs,
    read_queries,
)
from qa_search.cli._common import FiniteRange, RepeatedPairs, echo_json, library_errors
from qa_search.cli.build import keep_option

_index_dir = click.argument("index_dir", type=click.Path(file_okay=False))
_skip_missing = click.option(
    "--skip-missing",
    is_flag=True,
    help="Skip and count the pairs naming a thread the index lacks, instead of stopping at the first.",
)


def report_missing(pairs_file: str, missing: list) -> None:
    """Say on stderr how many pairs were skipped for naming a thread the index lacks."""
    if missing:
        first = ", ".join(f"line {p.line}" for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        click.echo(
            f"skipped {len(missing)} pair(s) of {pairs_file} naming a thread not in the index ({first})",
            err=True,
        )


def read_pair_file(pairs_file: str) -> list:
    """The pairs of ``pairs_file``, each once: repeats are said on stderr, their lines counted."""
    repeats = RepeatedPairs()
    pairs = read_pairs(pairs_file, on_repeat=repeats)
    repeats.warn()
    return pairs


@click.command("eval")
@_index_dir
@click.option(
    "--queries",
    "queries_file",
    type=click.Path(dir_okay=False, exists=True),
    help=('Labelled queries, one {"query_id", "text", "relevant_ids"} per line.'),
)
@click.option(
    "--pairs",
    "pairs_file",
    type=click.Path(dir_okay=False, exists=True),
    help=('Labelled pairs of thread ids, one {"id1", "id2", "label"} per line.'),
)
@_skip_missing
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@library_errors
def evaluate(
    index_dir: str, queries_file: str | None, pairs_file: str | None, skip_missing: bool, as_json: bool
) -> None:
    """Measure search quality (--queries) or duplicate verdicts (--pairs) of an index."""
    if (queries_file is None) == (pairs_file is None):
        raise click.UsageError("give exactly one of --queries FILE or --pairs FILE")
    index = ForumIndex.load(index_dir)
    if queries_file is not None:
        queries = read_queries(queries_file)
        unknown = sorted({i for q in queries for i in q.relevant_ids if i not in index})
        if unknown:  # such a thread can never be found: most likely the file is for another index
            shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            click.echo(
                f"warning: {len(unknown)} relevant id(s) are not in the index and count as misses: {shown}",
                err=True,
            )
        result = evaluate_queries(index, queries)
        if result["skipped_queries"]:
            click.echo(
                f"warning: {result['skipped_queries']} query(ies) have no relevant thread besides "
                "themselves and are not scored",
                err=True,
            )
    else:
        assert pairs_file is not None  # exactly one of the two was given
        pairs = read_pair_file(pairs_file)
        missing: list = []
        try:
            result = evaluate_pairs(index, pairs, on_missing=missing.append if skip_missing else None)
        except UnknownThreadError as exc:
            raise locate_unknown(pairs_file, pairs, exc) from None
        report_missing(pairs_file, missing)
        if result["positives"] in (0, result["pairs"]):
            kind = "non-duplicates (label 0)" if result["positives"] == 0 else "duplicates (label 1)"
            click.echo(
                f"warning: all {result['pairs']} pairs scored are {kind}: AP, precision and recall "
                "measure a scorer only on pairs of both labels",
                err=True,
            )
    if as_json:
        echo_json(result)
        return
    for key, value in result.items():
        click.echo(f"{key:>28}  {value}")


@click.command()
@_index_dir
@click.option(
    "--pairs",
    "pairs_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help=('Labelled pairs of thread ids in the index, one {"id1", "id2", "label"} per line.'),
)
@click.option(
    "--duplicate-precision",
    default=0.9,
    show_default=True,
    type=FiniteRange(0, 1, min_open=True),
    help='Precision the "duplicate" tier must reach.',
)
@click.option(
    "--related-precision",
    default=0.6,
    show_default=True,
    type=FiniteRange(0, 1, min_open=True),
    help='Precision the "related" tier must reach.',
)
@_skip_missing
@keep_option
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
@library_errors
def calibrate(
    index_dir: str,
    pairs_file: str,
    duplicate_precision: float,
    related_precision: float,
    skip_missing: bool,
    keep: int,
    as_json: bool,
) -> None:
    """Fit duplicate probabilities and tiers on labelled pairs; publish them with the index."""
    targets = {"duplicate": duplicate_precision, "related": related_precision}
    try:  # before anything is read or locked: a usage error
        check_targets(targets)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duplicate-precision") from None
    pairs = read_pair_file(pairs_file)
    missing: list = []
    try:
        cal, summary = calibrate_index(
            index_dir,
            [(p.id1, p.id2) for p in pairs],
            [p.label for p in pairs],
            targets,
            keep=keep,
            on_missing=(lambda i: missing.append(pairs[i])) if skip_missing else None,
        )
    except UnknownThreadError as exc:
        raise locate_unknown(pairs_file, pairs, exc) from None
    except ValueError as exc:
        raise click.ClickException(f"{pairs_file}: {exc}") from exc
    report_missing(pairs_file, missing)
    if as_json:
        echo_json(
            {
                **cal.to_dict(),
                "generation": summary.generation,
                "snapshot": summary.snapshot,
                "pruned": list(summary.pruned),
                "live_writes": summary.live_writes,
                "skipped_missing": len(missing),
            }
        )
        return
    r = cal.report
    click.echo(
        f"calibrated on {r['pairs']} pairs ({r['positives']} duplicates); "
        f"out-of-fold AP {r['ap_out_of_fold']:.3f}"
        + (f"; skipped {len(missing)} naming a thread not in the index" if missing else "")
    )
    for name, cut in cal.tiers.items():
        click.echo(
            f"  {name:>9}: probability >= {cut:.3f} (precision {r[name]['precision']:.3f}, "
            f"recall {r[name]['recall']:.3f} out of fold)"
        )
    blend = cal.reranker_blend
    if blend is not None:
        b = blend.report
        aps = ", ".join(
            f"{key.removeprefix('ap_out_of_fold_')} {value:.3f}" for key, value in b.items()
            if key.startswith("ap_out_of_fold_") and value is not None
        )
        click.echo(
            f"reranker: verdicts from the {blend.scorer} scorer (out-of-fold AP {aps}, on {b['pairs']} "
            f"pairs it was not trained on; {b['left_out_trained_on']} it was trained on left out)"
        )
        for name, cut in blend.tiers.items():
            click.echo(
                f"  {name:>9}: probability >= {cut:.3f} (precision {b[name]['precision']:.3f}, "
                f"recall {b[name]['recall']:.3f} out of fold)"
            )
    elif "reranker_blend" in r:
        click.echo(f"reranker: not blended ({r['reranker_blend']}); verdicts use it alone")
    click.echo(f"published generation {summary.generation} at {summary.snapshot}")
