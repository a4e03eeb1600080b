import pytest
import torch

from w2s import BestOfNParams, EFTParams, SamplingParams, SearchParams, W2SError
from w2s.logits import choose, filtered_probs
from w2s.params import field_docs


@pytest.mark.parametrize("knob", ["w", "k", "l"])
@pytest.mark.parametrize("value", [0, -1])
def test_search_knobs_must_be_positive(knob, value):
    with pytest.raises(W2SError, match=f"{knob} must be >= 1, got {value}"):
        SearchParams(**{knob: value})


def test_other_knob_errors_name_the_knob():
    with pytest.raises(W2SError, match="n must be >= 1, got 0"):
        BestOfNParams(n=0)
    with pytest.raises(W2SError, match="beta must be >= 0"):
        EFTParams(beta=-1)
    with pytest.raises(W2SError, match="top_p must be in"):
        SamplingParams(top_p=0)
    with pytest.raises(W2SError, match="max_new_tokens must be >= 1"):
        SamplingParams(max_new_tokens=0)


def test_params_round_trip_json_and_are_frozen():
    s = SamplingParams(stop=["\n", "END"], seed=3)
    assert s.stop == ("\n", "END")
    assert SamplingParams.from_dict(s.to_dict()) == s
    assert s.to_dict()["stop"] == ["\n", "END"]
    with pytest.raises(AttributeError):
        s.seed = 4  # type: ignore[misc]
    with pytest.raises(W2SError, match="unknown SearchParams field"):
        SearchParams.from_dict({"w": 1, "beam": 2})


def test_field_docs_feed_help():
    docs = field_docs(SearchParams)
    assert docs["w"].startswith("Beam width")
    assert set(docs) == {"w", "k", "l", "schedule"}


def test_top_k_and_top_p_exact():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    p = filtered_probs(logits, 1.0, 2, 1.0)
    torch.testing.assert_close(p, torch.tensor([[0.5 / 0.7, 0.2 / 0.7, 0, 0, 0]]))
    # top_p=0.8: 0.5+0.2 = 0.7 < 0.8, so 0.15 is needed; 0.1 is not
    p = filtered_probs(logits, 1.0, 0, 0.8)
    torch.testing.assert_close(p, torch.tensor([[0.5, 0.2, 0.15, 0, 0]]) / 0.85)
    # top_p smaller than the top token keeps exactly that token
    p = filtered_probs(logits, 1.0, 0, 0.1)
    torch.testing.assert_close(p, torch.tensor([[1.0, 0, 0, 0, 0]]))


def test_temperature_exact():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    p = filtered_probs(logits, 0.5, 0, 1.0)
    torch.testing.assert_close(p, torch.softmax(logits / 0.5, -1))


def test_greedy_at_temperature_zero():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 0.0]])
    u = torch.tensor([0.99, 0.99], dtype=torch.float64)
    assert choose(logits, SamplingParams(temperature=0), u).tolist() == [1, 0]


def test_top_k_one_and_top_p_at_an_exact_boundary():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125]]))  # dyadic: sums are exact
    torch.testing.assert_close(filtered_probs(logits, 1.0, 1, 1.0),
                               torch.tensor([[1.0, 0, 0, 0]]))
    # the mass before the second token is exactly top_p = 0.5: it is already reached, so drop
    torch.testing.assert_close(filtered_probs(logits, 1.0, 0, 0.5),
                               torch.tensor([[1.0, 0, 0, 0]]))
    torch.testing.assert_close(filtered_probs(logits, 1.0, 0, 0.75),
                               torch.tensor([[0.5, 0.25, 0, 0]]) / 0.75)
