#!/usr/bin/env python3
"""Checks that PyPI `transformers` loads adag's bundled demo model and agrees with adag.

The bundle (models/demo by default) stores adag's own logits for a few prompts in
reference_logits.json (written by `adag train demo`). This script loads the same directory with
AutoTokenizer / AutoModelForCausalLM, and checks, for every prompt:
  * the token ids are identical (tokenizer.json + tokenizer_config.json, BOS included);
  * the logits at every position agree to 1e-4 (max abs), and the top-1 tokens are the same.
It also prints the greedy answer to each prompt. Exit status 0 when everything agrees.

    pip install torch transformers
    python3 tools/check_demo_in_transformers.py [MODEL_DIR]
"""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "models" / "demo"
    ref = json.loads((model_dir / "reference_logits.json").read_text())
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    ok = True
    worst = 0.0
    for item in ref["prompts"]:
        ids = tok(item["prompt"])["input_ids"]
        if ids != item["ids"]:
            print(f"FAIL tokens {item['prompt']!r}: transformers {ids} vs adag {item['ids']}")
            ok = False
            continue
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        theirs = torch.tensor(item["logits"], dtype=torch.float32)
        diff = (logits - theirs).abs().max().item()
        worst = max(worst, diff)
        same_top = bool((logits.argmax(-1) == theirs.argmax(-1)).all())
        answer = tok.decode(model.generate(torch.tensor([ids]), max_new_tokens=3, do_sample=False)[0][len(ids):])
        status = "ok" if diff < 1e-4 and same_top else "FAIL"
        ok &= status == "ok"
        print(f"{status} {item['prompt']!r} -> {answer!r}: max |dlogit| {diff:.2e}, same top-1: {same_top}")
    print(f"{'all agree' if ok else 'MISMATCH'} (worst max |dlogit| {worst:.2e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
