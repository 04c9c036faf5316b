"""The `tokenizer.ggml.*` keys of a byte-level BPE tokenizer, read from tokenizer.json and tokenizer_config.json.

Written the way llama.cpp lays out a "gpt2"-model vocabulary so that its tokenizer (and ours, which is
libllama's) reproduces the Hugging Face one: the token list spans the model's whole embedding table, ids the
tokenizer does not use become `[PAD{id}]` entries, and added tokens get CONTROL or USER_DEFINED types.
Parsed with plain json: the conversion needs neither transformers nor tokenizers.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

from gguf import GGUFWriter, TokenType

from ..errors import ConversionError

# Pre-tokenizer regexes llama.cpp knows by name; a tokenizer is written only under the name whose regex it uses,
# since llama.cpp would otherwise split text differently from Hugging Face without any error.
PRE_TOKENIZER_REGEX = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


@dataclass
class Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    ids: dict[str, int]


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConversionError(f"cannot read {path}: {e}; re-download the tokenizer files") from None


def _split_regexes(pre_tokenizer: dict | None) -> list[str]:
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == "Sequence":
        return [r for p in pre_tokenizer.get("pretokenizers", []) for r in _split_regexes(p)]
    if pre_tokenizer.get("type") == "Split":
        return [pre_tokenizer.get("pattern", {}).get("Regex", "")]
    return []


def _looks_like_control(content: str) -> bool:
    # llama.cpp's converter also treats `<|...|>` added tokens as control tokens even when not flagged special
    return content.startswith("<|") and content.endswith("|>")


def read_vocab(tok_json: dict, vocab_size: int, pre: str) -> Vocab:
    """The full-length token list, token types and merges of a BPE tokenizer.json padded to `vocab_size`."""
    model = tok_json.get("model", {})
    if model.get("type") != "BPE":
        raise ConversionError(f"tokenizer.json holds a {model.get('type')} model; only byte-level BPE is supported")
    regexes = _split_regexes(tok_json.get("pre_tokenizer"))
    if regexes != [PRE_TOKENIZER_REGEX[pre]]:
        raise ConversionError(f"tokenizer.json pre-tokenizer {regexes} is not the {pre!r} one this model family uses; "
                              "llama.cpp would split text differently, so the checkpoint's tokenizer is not supported")
    ids = dict(model["vocab"])
    types = {i: TokenType.NORMAL for i in ids.values()}
    for added in tok_json.get("added_tokens", []):
        content, i = added["content"], added["id"]
        ids[content] = i
        control = added.get("special", False) or _looks_like_control(content)
        types[i] = TokenType.CONTROL if control else TokenType.USER_DEFINED
    if max(ids.values()) >= vocab_size:
        raise ConversionError(f"the tokenizer has token id {max(ids.values())} but the model's vocab_size is "
                              f"{vocab_size}; the tokenizer does not belong to this checkpoint")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    token_types = [TokenType.UNUSED] * vocab_size
    for content, i in ids.items():
        tokens[i] = content
        token_types[i] = types[i]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return Vocab(tokens, [int(t) for t in token_types], merges, ids)


def _token_content(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _chat_template(hf_dir: pathlib.Path, tok_config: dict):
    """The chat template from tokenizer_config.json, else chat_template.jinja, else chat_template.json."""
    if tok_config.get("chat_template"):
        return tok_config["chat_template"]
    jinja = hf_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = hf_dir / "chat_template.json"
    if as_json.is_file():
        return _read_json(as_json).get("chat_template")
    return None


def add_tokenizer(writer: GGUFWriter, hf_dir: pathlib.Path, vocab_size: int, *, pre: str,
                  default_bos_id: int | None = None) -> bool:
    """Add the tokenizer of `hf_dir` to `writer`; returns False (writing nothing) when there is no tokenizer.json."""
    tok_path = hf_dir / "tokenizer.json"
    if not tok_path.is_file():
        return False
    vocab = read_vocab(_read_json(tok_path), vocab_size, pre)
    cfg_path = hf_dir / "tokenizer_config.json"
    tok_config = _read_json(cfg_path) if cfg_path.is_file() else {}

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)

    def token_id(key: str) -> int | None:
        content = _token_content(tok_config.get(key))
        if content is None:
            return None
        if content not in vocab.ids:
            raise ConversionError(f"tokenizer_config.json names {key} {content!r}, which is not in tokenizer.json")
        return vocab.ids[content]

    bos = token_id("bos_token")
    bos = default_bos_id if bos is None else bos
    if bos is not None:
        writer.add_bos_token_id(bos)
    for key, add in (("eos_token", writer.add_eos_token_id), ("pad_token", writer.add_pad_token_id)):
        if (i := token_id(key)) is not None:
            add(i)
    writer.add_add_bos_token(bool(tok_config.get("add_bos_token", False)))
    template = _chat_template(hf_dir, tok_config)
    if template:
        writer.add_chat_template(template)
    return True
