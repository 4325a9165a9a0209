"""The docs name what the code has, with the code's defaults: every setting, command, option,
route, request and response field, index setting and public name, checked against the code
itself (pydantic models, click commands, the app's routers) so that a new one, a renamed one or a
changed default cannot go out undocumented or documented wrong."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import click
import pytest
from conftest import ROOT, FakeEmbedder
from fastapi.testclient import TestClient

import qa_search
from qa_search import ForumIndex, IndexConfig, Thread
from qa_search.cli import main
from service.app import create_app
from service.routes import ROUTERS
from service.settings import Settings

DOCS = ROOT / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading`` (a line of its own), header and
    rule left out."""
    lines = text.split(f"\n{heading}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def literal(cell: str) -> str:
    """A table cell's value without its code quoting (`x`, `"x"`)."""
    return cell.strip().strip("`").strip('"')


def shown(value: object) -> str:
    """A default as the docs write it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list) and not value:
        return "empty"
    return str(value)


# ---- the service's settings (docs/http-api.md, "Configuration")


def test_every_setting_is_in_the_configuration_table_with_its_default():
    rows = {literal(r[0]): literal(r[1]) for r in table_rows(page("http-api.md"), "## Configuration")}
    expected = {f"QA_SEARCH_{name.upper()}": shown(f.default) for name, f in Settings.model_fields.items()}
    assert sorted(rows) == sorted(expected)
    assert {name: rows[name] for name in expected} == expected


def test_every_qa_search_variable_the_docs_name_is_read_somewhere():
    read = {f"QA_SEARCH_{name.upper()}" for name in Settings.model_fields}
    read |= {p.envvar for cmd in main.commands.values() for p in cmd.params if isinstance(p.envvar, str)}
    for path in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        named = set(re.findall(r"QA_SEARCH_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
        assert named <= read, f"{path.name} names variables nothing reads: {sorted(named - read)}"


# ---- the command line (docs/cli.md)


def synopses(text: str) -> dict[str, list[str]]:
    """Each command's synopsis lines in the page's ``text`` code blocks (a line starting
    ``qa-search NAME`` and the indented lines continuing it)."""
    found: dict[str, list[str]] = {}
    for block in re.findall(r"```text\n(.*?)```", text, re.S):
        current = None
        for line in block.splitlines():
            start = re.match(r"(?:\$ )?qa-search ([a-z-]+)\b", line)
            if start and not line.startswith("$"):
                current = start.group(1)
                found.setdefault(current, []).append(line)
            elif current and line.startswith(" ") and line.strip().startswith("["):
                found[current][-1] += " " + line.strip()
            else:
                current = None
    return found


def options_of(command: click.Command) -> dict[str, click.Option]:
    return {name: p for p in command.params if isinstance(p, click.Option)
            for name in (*p.opts, *p.secondary_opts)}


def test_every_command_has_a_section_and_its_summary_line_lists_every_option():
    text = page("cli.md")
    summary = text.split("```text\n", 1)[1].split("```", 1)[0]
    groups = dict(re.findall(r"^([A-Z]+): (.*)$", summary, re.M))
    lines = synopses("```text\n" + summary + "```")
    assert sorted(lines) == sorted(main.commands)
    for name, command in main.commands.items():
        assert re.search(rf"^### .*`{re.escape(name)}`", text, re.M), f"no section for {name}"
        line = " ".join(lines[name])
        line += "".join(" " + groups[g] for g in groups if f"[{g}]" in line)
        named = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line))
        options = set(options_of(command)) - {"--help"}
        # --quiet is written -q; both spell the one flag
        assert named == options - ({"--quiet"} if "-q" in named else set()), name


def test_defaults_and_choices_in_the_synopses_are_the_code_s():
    checked = 0
    for page_name in ("cli.md", "forum-integration.md", "tuning.md"):
        for name, lines in synopses(page(page_name)).items():
            command = main.commands[name]
            options = options_of(command)
            for line in lines:
                for opt, value in re.findall(r"\[(--?[a-z][\w-]*) ([^\]\s]+)\]", line):
                    option = options.get(opt)
                    assert option is not None, f"{page_name}: {name} has no {opt}"
                    default = option.default
                    if name == "tune" and opt == "--learning-rate" and "--reranker" in line:
                        default = qa_search.DEFAULT_RERANKER_LEARNING_RATE
                    if "|" in value:
                        assert isinstance(option.type, click.Choice), (page_name, name, opt)
                        assert value.split("|") == list(option.type.choices), (page_name, name, opt)
                    elif re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", value):
                        assert float(value) == pytest.approx(default), (page_name, name, opt, default)
                    elif re.fullmatch(r"[a-z0-9_.]+", value) and isinstance(default, str):
                        assert value == default, (page_name, name, opt)
                    else:
                        continue  # a placeholder: N, FILE, DAYS...
                    checked += 1
    assert checked >= 20  # the check reads the synopses at all


def test_every_qa_search_command_line_in_the_docs_uses_options_its_command_has():
    unknown = set()
    checked = 0
    for path in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        pieces = re.findall(r"`([^`\n]+)`", text)
        for block in re.findall(r"```\w*\n(.*?)```", text, re.S):
            pieces += block.splitlines()
        for piece in pieces:
            # one command: up to the next command, a comment or a shell separator
            for name, rest in re.findall(r"qa-search ([a-z][a-z-]*)(.*?)(?=qa-search |#|;|\||&&|>|$)", piece):
                if name not in main.commands:
                    unknown.add(name)
                    continue
                named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[kq]\b)", rest))
                assert named <= set(options_of(main.commands[name])), f"{path.name}: {piece}"
                checked += len(named)
    assert checked >= 100  # the check finds the command lines and their options at all
    assert unknown <= {"set"}  # the crontab lines' user, named qa-search, runs `set -a`


# ---- the HTTP API (docs/http-api.md)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("docs") / "index"
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("t1", "How do I calm down before a panic attack?")])
    index.save(index_dir)
    return create_app(Settings(index_dir=index_dir), embedder=FakeEmbedder())


def routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route a client calls; a path's parameters written ``{}``."""
    found = set()
    every: list[Any] = [r for router in ROUTERS for r in router.routes]
    every += [r for r in app.routes if hasattr(r, "methods")]  # the app's own: /openapi.json
    for route in every:
        for method in route.methods or ():
            if method != "HEAD":  # the docs say once which routes answer HEAD too
                found.add((method, re.sub(r"\{[^}]*\}", "{}", route.path)))
    # the interactive docs' OAuth2 redirect is Swagger UI's, for no operation of this API
    found.discard(("GET", "/docs/oauth2-redirect"))
    return found


def test_every_route_is_in_the_http_api_page_and_the_endpoints_table_names_only_routes(app):
    text = page("http-api.md")
    written = re.sub(r"\{[^}]*\}", "{}", text)
    for method, path in routes(app):
        assert re.search(rf"`{method} {re.escape(path)}(?![\w/.{{-])", written), f"{method} {path}"
    in_table = set()
    for cells in table_rows(text, "## Endpoints"):
        for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?]*)", cells[0]):
            in_table.add((method, re.sub(r"\{[^}]*\}", "{}", path)))
    assert in_table and in_table <= routes(app)


def test_every_request_and_response_field_is_in_the_docs(app):
    schema = app.openapi()
    http_api, formats = page("http-api.md"), page("data-formats.md")
    for model, spec in schema["components"]["schemas"].items():
        # a thread and its answers are the dump format's
        text = formats if model in ("ThreadIn", "AnswerIn") else http_api
        for field in spec.get("properties", {}):
            assert f"`{field}`" in text or f'"{field}"' in text, f"{model}.{field}"
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] in ("query", "header"):
                    assert parameter["name"] in http_api, f"{path}: {parameter['name']}"


def test_every_metric_is_in_the_http_api_page(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("t1", "How do I calm down before a panic attack?")])
    index.save(tmp_path / "index")
    key = "a metrics key for the scrape"
    app = create_app(Settings(index_dir=tmp_path / "index", metrics_key=key), embedder=FakeEmbedder())
    with TestClient(app) as client:
        client.get("/v1/search", params={"q": "panic attack"})
        scrape = client.get("/metrics", headers={"X-API-Key": key})
    assert scrape.status_code == 200
    # a histogram's _created companion is prometheus_client's own (when its series began)
    families = {f for f in re.findall(r"^# TYPE (qa_search_\w+) ", scrape.text, re.M)
                if not f.endswith("_created")}
    assert "qa_search_query_cache_total" in families  # the key was taken: every family is there
    text = page("http-api.md")
    assert [f for f in sorted(families) if f"`{f}" not in text] == []


# ---- the library (docs/library.md)


def test_every_index_setting_is_in_the_indexconfig_table_with_its_default():
    documented = {}
    for cells in table_rows(page("library.md"), "## `IndexConfig`"):
        names = [literal(n) for n in cells[0].split(",")]
        values = [literal(v) for v in cells[1].split(",")]
        assert len(names) == len(values), cells
        documented.update(zip(names, values, strict=True))
    default = IndexConfig()
    assert documented == {f.name: shown(getattr(default, f.name)) for f in fields(IndexConfig)}


def test_every_public_name_is_in_the_docs():
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    missing = [n for n in qa_search.__all__ if not re.search(rf"(?<!\w){re.escape(n)}\b", text)]
    assert missing == []


def test_the_docs_pages_are_all_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert sorted(p.name for p in DOCS.glob("*.md")) == sorted(re.findall(r"\b([\w-]+\.md)$", nav, re.M))


def test_the_page_helpers_read_tables_as_written():
    text = "intro\n## T\n\nsome words\n\n| a | b |\n|---|---|\n| `x` | `1` |\n| y, z | 2, 3 |\n\nafter |\n"
    assert table_rows(text, "## T") == [["`x`", "`1`"], ["y, z", "2, 3"]]
    values: list[object] = [None, False, 10.0, 0.5, [], "s"]
    assert [shown(v) for v in values] == ["unset", "false", "10", "0.5", "empty", "s"]
