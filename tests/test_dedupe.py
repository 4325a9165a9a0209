"""Duplicate clusters among stored threads (qa_search.tools.dedupe and ``qa-search dedupe``)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import SAMPLE_DUMP, SAMPLE_GROUPS, FakeEmbedder, labelled_pairs
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from qa_search import Answer, ForumIndex, IndexConfig, Thread, find_duplicate_clusters, read_dump
from qa_search.cli import main
from qa_search.embedding.model_defaults import ShippedDefaults
from qa_search.index.defaults import neighbour_quartiles, shipped_calibration
from qa_search.tools.dedupe import COSINE_FLOOR, cluster_edges, forum_floor, neighbour_pairs

# near-paraphrases (the fake embedder is a bag of words: shared words make the cosine)
THREADS = [
    Thread("a1", "how do I stop panic attacks at work"),
    Thread("a2", "how can I stop my panic attacks at work", answers=(Answer("a2-1", "breathe"),), score=1),
    Thread("a3", "how do I stop panic attacks at work quickly", score=9),
    Thread("b1", "my partner and I fight about money all the time", score=3),
    Thread("b2", "my partner and I always fight about money", score=4),
    Thread("c1", "I cannot sleep because my mind races at night"),
    Thread("c2", "my mind races at night and I cannot sleep"),
    Thread("d1", "grief after losing my dog"),
    Thread("e1", "my teenager refuses to go to school"),
    Thread("f1", "how to tell my boss about my depression"),
]
GROUPS = [{"a1", "a2", "a3"}, {"b1", "b2"}, {"c1", "c2"}]


def _labelled_pairs():
    return labelled_pairs(THREADS, GROUPS)


@pytest.fixture
def calibrated():
    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(THREADS)
    pairs = _labelled_pairs()
    index.calibrate([(a, b) for a, b, _ in pairs], [y for *_, y in pairs], {"duplicate": 0.9})
    return index


def _symmetric(index, a, b):
    s = index.pair_scores([(a, b), (b, a)])
    return (s[0] + s[1]) / 2


def test_known_duplicate_groups_come_out_as_clusters_with_the_scorers_probabilities(calibrated):
    result = find_duplicate_clusters(calibrated, neighbours=4, by="probability")
    assert result.calibrated and result.by == "probability"
    assert result.threshold == calibrated.duplicate_cutoff()[0]
    assert sorted(map(sorted, ({t.thread_id for t in c.threads} for c in result.clusters))) == sorted(
        map(sorted, GROUPS)
    )
    # largest first; every pair inside a cluster is listed with pair_scores' value (both ways)
    assert [len(c.threads) for c in result.clusters] == [3, 2, 2]
    for c in result.clusters:
        n = len(c.threads)
        assert len(c.pairs) == n * (n - 1) // 2
        for p in c.pairs:
            assert p.score == pytest.approx(_symmetric(calibrated, p.id1, p.id2), abs=1e-6)
            assert 0 <= p.score <= 1 and p.probability == p.score
        assert c.mean_score >= result.threshold
        assert [p.score for p in c.pairs] == sorted((p.score for p in c.pairs), reverse=True)


def test_progress_is_reported_and_tiny_forums_give_no_clusters(calibrated):
    searched, scored = [], []
    result = find_duplicate_clusters(
        calibrated,
        neighbours=4,
        search_progress=lambda *a: searched.append(a),
        score_progress=lambda *a: scored.append(a),
    )
    assert searched[-1] == (len(THREADS), len(THREADS)) and scored[-1] == (2 * result.candidate_pairs,) * 2
    for threads in ([], THREADS[:1]):
        index = ForumIndex(FakeEmbedder(), IndexConfig())
        index.upsert(threads)
        result = find_duplicate_clusters(index)
        assert result.clusters == () and result.threads == len(threads) and result.candidate_pairs == 0
    with pytest.raises(ValueError, match="neighbours"):
        find_duplicate_clusters(index, neighbours=0)


def test_canonical_is_the_most_answered_then_the_most_voted(calibrated):
    found = find_duplicate_clusters(calibrated, neighbours=4, by="probability")
    clusters = {c.canonical: c for c in found.clusters}
    # a2 has the only answer (a3 has more votes); b2 out-votes b1
    assert {"a2", "b2"} <= clusters.keys()
    assert clusters["a2"].threads[0].thread_id == "a2" and clusters["a2"].threads[0].answers == 1
    assert clusters["b2"].threads[0].votes == 4
    # c1 and c2 tie on answers and votes: the tie-break is deterministic (same mean, smaller id)
    assert "c1" in clusters
    # the others follow by their score with the canonical thread, best first
    c = clusters["a2"]
    to_canon = [_symmetric(calibrated, "a2", t.thread_id) for t in c.threads[1:]]
    assert to_canon == sorted(to_canon, reverse=True)


def test_threshold_is_respected_and_raising_it_never_grows_clusters(calibrated):
    loose = find_duplicate_clusters(calibrated, 0.05, neighbours=9)
    strict = find_duplicate_clusters(calibrated, 0.99, neighbours=9)
    for result in (loose, strict):
        for c in result.clusters:
            assert c.mean_score >= result.threshold
            # every member reaches the threshold with at least one other member
            for t in c.threads:
                assert max(p.score for p in c.pairs if t.thread_id in (p.id1, p.id2)) >= result.threshold
    assert sum(len(c.threads) for c in strict.clusters) <= sum(len(c.threads) for c in loose.clusters)
    assert strict.edges <= loose.edges


def _chain_index():
    """Questions at 0, 25, 50, 75 and 100 degrees on one circle: neighbours have cosine 0.906,
    two apart 0.643, three apart 0.259."""
    emb = FakeEmbedder(dimension=8)
    threads = []
    for i, deg in enumerate((0, 25, 50, 75, 100)):
        v = np.zeros(8, np.float32)
        v[0], v[1] = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        emb.overrides[f"question {i}"] = v
        threads.append(Thread(f"q{i}", f"question {i}"))
    index = ForumIndex(emb, IndexConfig(duplicate_threshold=0.85, lexical_weight=0))
    index.upsert(threads)
    return index


def test_no_chaining_through_weak_links():
    index = _chain_index()
    # each link is strong, so connected components would make one cluster of all five
    single = find_duplicate_clusters(index, neighbours=4, linkage="single")
    assert [len(c.threads) for c in single.clusters] == [5]
    result = find_duplicate_clusters(index, neighbours=4)
    assert not result.calibrated and result.threshold == 0.85 and result.cosine_floor == 0.85
    assert all(len(c.threads) == 2 for c in result.clusters)
    for c in result.clusters:
        assert c.min_score >= 0.85  # only adjacent questions share a cluster
    assert len(result.clusters) == 2


def test_cluster_edges_guarantees_on_random_graphs():
    rng = np.random.default_rng(5)
    n = 40
    full = rng.random((n, n))
    full = (full + full.T) / 2
    edges = np.array([(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.15])
    scores = full[edges[:, 0], edges[:, 1]]
    lookup = lambda pairs: np.array([full[a, b] for a, b in pairs])  # noqa: E731
    t = 0.6
    strong = edges[scores >= t]
    graph = coo_matrix((np.ones(len(strong)), (strong[:, 0], strong[:, 1])), shape=(n, n))
    n_comp, labels = connected_components(graph, directed=False)
    components = sorted(
        sorted(np.flatnonzero(labels == c).tolist()) for c in range(n_comp) if (labels == c).sum() > 1
    )
    single, _ = cluster_edges(n, edges, scores, t, "single")
    assert sorted(single) == components
    for linkage in ("average", "complete"):
        groups, known = cluster_edges(n, edges, scores, t, linkage, lookup)
        seen = set()
        for g in groups:
            assert not seen & set(g)
            seen |= set(g)
            values = [full[a, b] for i, a in enumerate(g) for b in g[i + 1 :]]
            assert all(known[(a, b)] == full[a, b] for i, a in enumerate(g) for b in g[i + 1 :])
            assert (np.mean(values) if linkage == "average" else min(values)) >= t
            # each cluster lies inside one connected component of the strong edges
            assert len({labels[m] for m in g}) == 1
    with pytest.raises(ValueError, match="needs score_pairs"):
        cluster_edges(n, edges, scores, t, "average")


def test_neighbour_graph_matches_brute_force_and_pairs_are_undirected():
    threads = [Thread(f"t{i}", f"word{i % 7} word{i % 5} word{i % 3} topic") for i in range(30)]
    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(threads)
    tids, cos, rows = index.question_neighbours(4, batch=7)
    vecs = FakeEmbedder().encode([t.question_text for t in threads])
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    assert tids == [t.id for t in threads]
    np.testing.assert_allclose(cos, -np.sort(-sims, axis=1)[:, :4], atol=1e-5)
    assert not np.any(rows == np.arange(30)[:, None])
    edges, ecos = neighbour_pairs(rows, cos, 0.2)
    assert np.all(edges[:, 0] < edges[:, 1]) and len({tuple(e) for e in edges.tolist()}) == len(edges)
    assert np.all(ecos >= 0.2)
    np.testing.assert_allclose(ecos, sims[edges[:, 0], edges[:, 1]], atol=1e-5)


def test_cli_json_lists_clusters_of_a_calibrated_index(tmp_path, calibrated, fake_cli):
    calibrated.save(tmp_path / "ix")
    tier = f"{calibrated.duplicate_cutoff()[0]:.6f}"
    by_p = ["dedupe", str(tmp_path / "ix"), "--neighbours", "4", "--min-probability", tier, "--quiet"]
    r = fake_cli.invoke(main, [*by_p, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["calibrated"] is True and out["by"] == "probability" and out["threads"] == len(THREADS)
    assert out["threshold"] == pytest.approx(calibrated.duplicate_cutoff()[0], abs=1e-6)
    assert [c["size"] for c in out["clusters"]] == [3, 2, 2]
    assert out["clusters"][0]["canonical"] == "a2" and out["clustered_threads"] == 7
    assert {"id1", "id2", "score", "probability"} == set(out["clusters"][0]["pairs"][0])
    assert out["seconds"] >= 0
    # human output: the thread to keep first, and the others with their probability
    r = fake_cli.invoke(main, by_p)
    assert r.exit_code == 0, r.output
    assert "3 duplicate cluster(s) holding 7 of 10 threads" in r.output
    assert "keep  [a2] how can I stop my panic attacks at work  (1 answer(s), 1 vote(s))" in r.output
    assert "merge [b1] my partner and I fight about money all the time" in r.output
    # by default a calibrated index is clustered on raw cosine, the probabilities shown beside
    r = fake_cli.invoke(main, ["dedupe", str(tmp_path / "ix"), "--min-cosine", "0.5", "--json", "-q"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["calibrated"] is True and out["by"] == "cosine" and out["threshold"] == 0.5
    assert all(p["probability"] is not None for c in out["clusters"] for p in c["pairs"])
    r = fake_cli.invoke(main, ["dedupe", str(tmp_path / "ix"), "--min-cosine", "0.5", "-q"])
    assert r.exit_code == 0 and "clustered by raw question cosine" in r.output and ", p=" in r.output
    r = fake_cli.invoke(
        main, ["dedupe", str(tmp_path / "ix"), "--min-cosine", "0.5", "--min-probability", "0.5"]
    )
    assert r.exit_code == 2 and "not both" in r.output


def test_a_calibrated_index_clusters_on_cosine_when_asked(calibrated):
    by_cos = find_duplicate_clusters(calibrated, 0.5, neighbours=9, by="cosine")
    assert by_cos.calibrated and by_cos.by == "cosine" and by_cos.cosine_floor == 0.5
    assert by_cos.clusters
    for c in by_cos.clusters:
        for p in c.pairs:
            cos = float(calibrated._question_vector(p.id1) @ calibrated._question_vector(p.id2))
            assert p.score == pytest.approx(cos, abs=1e-6)
            # the calibrated probability rides along
            assert p.probability == pytest.approx(_symmetric(calibrated, p.id1, p.id2), abs=1e-6)
        assert c.mean_score >= 0.5
    # cosine is the default, at the config's duplicate_threshold
    default = find_duplicate_clusters(calibrated, neighbours=9)
    assert default.by == "cosine" and default.threshold == calibrated.config.duplicate_threshold
    with pytest.raises(ValueError, match="by must be"):
        find_duplicate_clusters(calibrated, by="votes")
    calibrated_copy = ForumIndex(calibrated.embedder, calibrated.config)
    calibrated_copy.upsert(calibrated.threads())
    with pytest.raises(ValueError, match="not calibrated"):
        find_duplicate_clusters(calibrated_copy, by="probability")


def test_cli_says_when_the_index_is_uncalibrated(tmp_path, fake_cli):
    index = ForumIndex(FakeEmbedder(), IndexConfig(duplicate_threshold=0.6))
    index.upsert(THREADS)
    index.save(tmp_path / "ix")
    r = fake_cli.invoke(main, ["dedupe", str(tmp_path / "ix"), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "is not calibrated: pairs have raw question cosines" in r.stderr
    out = json.loads(r.stdout)
    assert out["calibrated"] is False and out["by"] == "cosine" and out["threshold"] == 0.6
    r = fake_cli.invoke(main, ["dedupe", str(tmp_path / "ix"), "--min-probability", "0.9"])
    assert r.exit_code == 1 and "not calibrated, so it has no probabilities" in r.output
    r = fake_cli.invoke(main, ["dedupe", str(tmp_path / "ix"), "--min-cosine", "0.99", "--json", "-q"])
    assert r.exit_code == 0 and json.loads(r.stdout)["threshold"] == 0.99


@pytest.mark.slow
def test_sample_forum_duplicate_groups_are_recovered(real_embedder):
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    index = ForumIndex(real_embedder)
    index.upsert(read_dump(SAMPLE_DUMP))

    def measure(linkage):
        # raw cosine: the sample's paraphrases have question cosines of 0.50-0.70
        result = find_duplicate_clusters(index, 0.5, linkage=linkage, by="cosine")
        found = [{t.thread_id for t in c.threads} for c in result.clusters]
        recovered = sum(any(g <= f for f in found) for g in groups)  # one cluster holds the group
        pairs = [(a, b) for f in found for a in f for b in f if a < b]
        correct = sum(any({a, b} <= g for g in groups) for a, b in pairs)
        return recovered, correct / len(pairs)

    recovered, precision = measure("average")
    assert recovered >= 0.7 * len(groups)
    assert precision >= 0.4
    # connected components of the same edges chain unrelated threads together
    _, chained_precision = measure("single")
    assert precision >= 2 * chained_precision, (precision, chained_precision)


def test_an_own_calibration_floor_is_lowered_to_the_forums_scale_never_raised():
    more = (Thread(f"x{i}", f"question {i} about topic {i % 7} and more {i}") for i in range(30))
    threads = [*THREADS, *more]
    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(threads)
    pairs = labelled_pairs(threads, GROUPS)
    own = index.calibrate([(a, b) for a, b, _ in pairs], [y for *_, y in pairs])
    forum = neighbour_quartiles(index)
    assert forum is not None
    # no shipped calibration to read Quora's scale from: the floor as measured
    assert forum_floor(index, own) == COSINE_FLOOR

    def shipped_with(reference):
        cal = replace(own, cosine_quartiles=reference)
        content = {"duplicate_calibration": cal.to_dict()}
        index.shipped_defaults = ShippedDefaults.of(index.embedder.name, content)

    # a reference scale above the forum's (long questions): the floor moves down with it
    reference = tuple(min(0.99, q + 0.2 + 0.01 * i) for i, q in enumerate(forum))
    shipped_with(reference)
    assert shipped_calibration(index).cosine_quartiles == reference
    low = forum_floor(index, own)
    assert low < COSINE_FLOOR
    assert low == pytest.approx(float(np.interp(COSINE_FLOOR, [-1, *reference, 1], [-1, *forum, 1])))
    # a denser forum than the reference: the floor stays where it was measured
    shipped_with(tuple(q - 0.3 for q in forum))
    assert forum_floor(index, own) == COSINE_FLOOR
    assert find_duplicate_clusters(index, 0.5, by="probability").cosine_floor == COSINE_FLOOR


def test_a_forum_calibrated_on_its_own_pairs_clusters_its_reworded_duplicates(real_embedder):
    """The sample's questions are title and body, so its reworded duplicates sit at raw cosines
    0.45-0.6. Calibrated on its own pairs (each documented group's pairs, and each grouped
    thread's nearest threads outside its group as non-duplicates), clustering from its
    "related" tier must reach them: the cosine floor under which pairs go unscored is put on
    the forum's scale, not taken raw from Quora's (where it dropped 12 of the 20 groups found)."""
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    group_of = {t: i for i, g in enumerate(groups) for t in g}
    index = ForumIndex(real_embedder)
    index.upsert(read_dump(SAMPLE_DUMP))
    pairs = {tuple(sorted((a, b))): 1 for g in groups for a in g for b in g if a < b}
    tids, _, rows = index.question_neighbours(7)
    for i, a in enumerate(tids):
        if a in group_of:
            near = [tids[r] for r in rows[i] if r >= 0 and group_of.get(tids[r]) != group_of[a]][:5]
            pairs.update({tuple(sorted((a, b))): 0 for b in near})
    index.calibrate(list(pairs), list(pairs.values()))
    related = index.calibration.tiers["related"]
    result = find_duplicate_clusters(index, related, by="probability", linkage="complete")
    assert result.cosine_floor < COSINE_FLOOR - 0.1
    found = [{t.thread_id for t in c.threads} for c in result.clusters]
    whole = sum(g in found for g in groups)
    assert whole >= 18, whole
    assert sum(f in groups for f in found) >= 0.5 * len(found)


def test_batched_pair_features_equal_one_pair_at_a_time():
    # texts repeat across pairs (as in a neighbour graph) and one is only stop words
    threads = [*THREADS, Thread("g1", "the and of"), Thread("g2", "how do I stop it")]
    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(threads)
    ids = [t.id for t in threads]
    pairs = [(a, b) for a in ids for b in ids if a != b]
    batched = index.pair_features(pairs)
    one_by_one = np.vstack([index.pair_features([p]) for p in pairs])
    np.testing.assert_array_equal(batched, one_by_one)
    # the lexical column is the per-query BM25 the search uses
    lexical = index.lexical_index()
    for a, b in pairs[:30]:
        text = index.get(a).question_text
        assert index.pair_features([(a, b)])[0, 1] == pytest.approx(lexical.scores(text)[lexical.position[b]])
