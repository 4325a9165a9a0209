"""``qa-search update``, ``delete``, ``configure``, ``rollback``, ``info`` and ``verify``:
operating an index directory after its first build."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Literal

import click

from qa_search import (
    IndexConfig,
    SettingsError,
    configure_index,
    delete_threads,
    describe_index,
    rollback_index,
    update_index,
    verify_index,
)
from qa_search.cli._common import echo_json, library_errors, settings_option
from qa_search.cli._input import StepBar, ThreadInput, input_options
from qa_search.cli.build import group_readable_option, keep_option, report

INDEX_DIR = click.argument("index_dir", type=click.Path(file_okay=False))


@click.command()
@INDEX_DIR
@click.argument("dumps", nargs=-1, required=True, type=click.Path(dir_okay=False))
@input_options
@keep_option
@group_readable_option
@click.option("--no-cache", is_flag=True, help="Embed every new text, ignoring DIR/cache.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def update(
    index_dir: str,
    dumps: tuple[str, ...],
    fmt: str,
    mappings: tuple[str, ...],
    site_url: str | None,
    skip_invalid: bool,
    keep: int,
    group_readable: bool | None,
    no_cache: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Add or replace the threads in DUMPS and publish the result as a new generation.

    Threads not in DUMPS stay as they are; the model is the one the index was built with.
    """
    source = ThreadInput(dumps, fmt, mappings, site_url, skip_invalid, quiet)
    with (
        source.reported_on_failure(),
        StepBar("embedding", quiet) as bar,
        StepBar("indexing", quiet, unit="vectors") as ibar,
    ):
        summary = update_index(
            index_dir, source, keep=keep, use_cache=not no_cache, progress=bar, index_progress=ibar,
            group_readable=group_readable,
        )
    report(summary, source, as_json, "updated")


@click.command()
@INDEX_DIR
@click.argument("thread_ids", nargs=-1, required=True)
@click.option("--missing-ok", is_flag=True, help="Ignore ids that are not in the index.")
@keep_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def delete(index_dir: str, thread_ids: tuple[str, ...], missing_ok: bool, keep: int, as_json: bool) -> None:
    """Remove threads by id and publish the result as a new generation."""
    summary = delete_threads(index_dir, thread_ids, missing_ok=missing_ok, keep=keep)
    if as_json:
        echo_json(summary.to_dict())
    elif not summary.deleted:  # --missing-ok and none of the ids was there
        click.echo(
            f"deleted nothing: none of the ids is in the index; no generation published "
            f"(generation {summary.generation} stays current, {summary.threads} threads)"
        )
    else:
        click.echo(
            f"deleted {summary.deleted} thread(s); {summary.threads} threads remain; "
            f"published generation {summary.generation} at {summary.snapshot}"
        )


@click.command()
@INDEX_DIR
@settings_option
@keep_option
@click.option(
    "--refresh-defaults",
    is_flag=True,
    help="Adopt this package's shipped relevance model and duplicate calibration for the index's model "
    "in place of those its snapshot recorded.",
)
@click.option(
    "--reranker",
    "reranker_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Attach the reranker in this directory (from qa-search tune --reranker): copied into the index, "
    "it scores duplicate verdicts.",
)
@click.option("--no-reranker", is_flag=True, help="Detach the index's reranker.")
@click.option("--json", "as_json", is_flag=True, help="Print the settings (and what was published) as JSON.")
@library_errors
def configure(
    index_dir: str,
    settings: dict[str, str],
    keep: int,
    refresh_defaults: bool,
    reranker_dir: str | None,
    no_reranker: bool,
    as_json: bool,
) -> None:
    """Show the index's settings; with --set, change them and publish a new generation.

    Nothing is embedded again. chunk_words, chunk_overlap and exact_search_limit decide what is
    embedded and how, so they change only with a new build (qa-search build --set). The shipped
    relevance model and duplicate calibration recorded in the index stay until --refresh-defaults.
    """
    if reranker_dir is not None and no_reranker:
        raise click.UsageError("give --reranker DIR or --no-reranker, not both")
    reranker: str | Literal[False] | None = False if no_reranker else reranker_dir
    try:
        result = configure_index(
            index_dir, settings, keep=keep, refresh_defaults=refresh_defaults, reranker=reranker
        )
    except SettingsError as exc:  # raised before the model loads
        raise click.BadParameter(str(exc), param_hint="--set") from None
    config, summary = result.config, result.published
    defaults = asdict(IndexConfig())
    if as_json:
        out: dict = {"config": asdict(config), "changed": config.changed(), "defaults": result.defaults,
                     "reranker": result.reranker}
        if summary is not None:
            out.update(generation=summary.generation, snapshot=summary.snapshot, pruned=list(summary.pruned))
        echo_json(out)
        return
    if summary is not None:
        click.echo(f"published generation {summary.generation} at {summary.snapshot}")
    elif settings or refresh_defaults or reranker is not None:
        click.echo(f"{_unchanged(settings, refresh_defaults, reranker, result.defaults)}; nothing published")
    click.echo(f"{index_dir}: settings of generation {result.generation}")
    for name, value in asdict(config).items():
        note = "" if value == defaults[name] else f"  (default {defaults[name]})"
        click.echo(f"  {name:<20} {value}{note}")
    if result.defaults is not None:
        click.echo(f"  {'shipped defaults':<20} {defaults_line(result.defaults)}")
    rr = result.reranker
    click.echo(f"  {'reranker':<20} " + ("none" if rr is None else (
        f"{rr['dir']} (sha256 {rr['sha256'][:12]}, {rr['precision']}, trained on {rr['pairs']} pairs)")))
    if reranker_dir is not None and summary is not None:
        click.echo(
            f"note: duplicate verdicts use the reranker alone until `qa-search calibrate {index_dir} "
            "--pairs FILE` (labelled pairs it was not trained on) measures how it blends with the "
            "calibrated scorer"
        )


def _unchanged(
    settings: dict[str, str], refresh: bool, reranker: str | Literal[False] | None, defaults: dict | None
) -> str:
    """Why a configure that asked for a change published nothing, naming what it asked for."""
    held = ["these settings"] if settings else []
    ships = defaults is not None and defaults["shipped"] is not None
    if refresh and ships:
        held.append("the package's shipped defaults")
    if reranker is False:
        held.append("no reranker")
    elif reranker is not None:
        held.append("this reranker")
    why = [f"the index already has {' and '.join(held)}"] if held else []
    if refresh and not ships:
        why.append("the package ships no defaults for the index's model")
    return "; ".join(why)


def defaults_line(used: dict) -> str:
    """The shipped defaults in use, in a line: which, whether recorded, whether the package's."""
    shipped = used["shipped"]
    if shipped is None:
        return "none for this model"
    fitted = f", fitted {shipped['fitted']}" if shipped.get("fitted") else ""
    where = "recorded in the snapshot" if used["recorded"] else "the package's (the snapshot records none)"
    newer = "" if used["current"] else "; the package has others (configure --refresh-defaults adopts them)"
    return f"sha256 {shipped['sha256'][:12]}{fitted}, {where}{newer}"


@click.command("rollback")
@INDEX_DIR
@click.option(
    "--to", "to", type=int, default=None,
    help="Generation to make current, older or newer [default: the newest kept one numbered below the "
    "current one].",
)
@click.option(
    "--json", "as_json", is_flag=True,
    help='Print {"from", "current", "restored_writes", "dropped_writes"} as JSON.',
)
@library_errors
def rollback_command(index_dir: str, to: int | None, as_json: bool) -> None:
    """Make another kept generation current again (atomically).

    The service's live writes that the current generation holds and the target does not are put
    back into the write log, so the rolled-back index still has every acknowledged write; pending
    writes the target holds already are taken out of it."""
    done = rollback_index(index_dir, to)
    restored, dropped = done.restored_writes, done.dropped_writes
    if as_json:
        echo_json(done.to_dict())
    else:
        click.echo(f"{index_dir}: generation {done.current} is current (was {done.previous})"
                   + (f"; {restored} live write(s) it lacks restored to the write log" if restored else "")
                   + (f"; {dropped} pending write(s) it holds already taken out of the log"
                      if dropped else ""))


@click.command()
@INDEX_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@library_errors
def info(index_dir: str, as_json: bool) -> None:
    """Show an index directory's generations, the current one, counts, model and sizes."""
    described = describe_index(index_dir)
    gens = described.generations
    out = described.to_dict()
    if as_json:
        echo_json(out)
        return
    click.echo(f"{index_dir}: current generation {out['current']}")
    if out["serving"] != out["current"]:
        click.echo(f"  a rollback to generation {out['serving']} was stopped before it moved CURRENT: the "
                   "service already serves it, and the next writer (build, update, delete, configure, "
                   "calibrate, rollback) finishes it")
    click.echo(f"  {'gen':>6}  {'on':>4}  {'created (UTC)':<20}  {'threads':>8}  {'vectors':>8}  {'MiB':>8}"
               "  model")
    for g in gens:
        mark = "*" if g.current else " "
        click.echo(
            f"{mark} {g.number:>6}  {g.parent or '-':>4}  {g.created_at or '?':<20}  {g.threads or 0:>8}  "
            f"{g.vectors or 0:>8}  {g.bytes / 2**20:>8.1f}  {g.model or g.error}"
            + (f" ({g.backend})" if g.backend else "")
            + ("" if g.published else "  (never published: removed by the next writer)")
        )
    click.echo(
        f"  embedding cache: {out['cache']['shards']} shard(s), {out['cache']['bytes'] / 2**20:.1f} MiB"
    )
    if out["defaults"] is not None:
        used = out["defaults"]
        calibration = {"own": "its own calibration", "shipped": "the shipped calibration",
                       "none": "raw cosine"}[used["calibration"]]
        verdicts = {
            "reranker": "the attached reranker alone (no blend with a calibration is fitted for it: "
                        "calibrate with it attached fits one where enough pairs it was not trained "
                        "on allow)",
            "combined": f"{calibration} and the attached reranker, blended",
            "calibrated": calibration + (" (the attached reranker is not run: the blend left the "
                                         "verdicts to the calibration)" if used.get("reranker") else ""),
            "cosine": calibration,
        }
        click.echo(f"  duplicate verdicts: {verdicts[used.get('verdicts', 'calibrated')]}")
        click.echo(f"  shipped defaults: {defaults_line(used)}")
    if out["history"]:
        click.echo("  last publishes and rollbacks (UTC):")
        for rec in out["history"]:
            action, generation = rec.get("action", "?"), rec.get("generation")
            click.echo(f"    {rec.get('at', '?')}  {action:<8}  generation {generation}")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option(
    "--all", "all_generations", is_flag=True, help="Check every kept generation, not only the current."
)
@click.option("--no-model", is_flag=True, help="Skip loading the model to compare its fingerprint.")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "checked": {what: [problems]}} as JSON.')
@library_errors
def verify(path: str, all_generations: bool, no_model: bool, as_json: bool) -> None:
    """Check an index (its manifest, checksums, counts, model); exit status 1 on any problem."""
    results = verify_index(path, all_generations=all_generations, check_model=not no_model)
    ok = not any(results.values())
    warnings = getattr(results, "warnings", [])  # worth a look, not a failure
    if as_json:
        echo_json({"ok": ok, "checked": results, **({"warnings": warnings} if warnings else {})})
    else:
        for warning in warnings:
            click.echo(f"WARNING {path}: {warning}", err=True)
        for what, problems in results.items():
            for problem in problems:  # one line each, for grep and for cron mail
                # not an index at all: the reason names the path already
                where = f"{path}: {what}: " if what != path else ("" if path in problem else f"{path}: ")
                click.echo(f"FAILED {where}{problem}", err=True)
            if not problems:
                click.echo(f"ok {path}: {what}")
    sys.exit(0 if ok else 1)
