"""Tiny random Qwen2.5-Omni thinkers (and a matching tokenizer) built with transformers on CPU.

They are the numerical truth for conversion and runtime parity tests: small enough to build in about a second,
with weights drawn wider than transformers' own init so that logits are far from flat and a wrong graph shows.

    path = make_thinker(tmp / "base", "base")          # config.json + safetensors + tokenizer files
    model = load_thinker(path)                          # the transformers model back, float32, eval mode
"""

from __future__ import annotations

import copy
import functools
import json
import math
import pathlib

import torch
import safetensors.numpy
from safetensors.torch import load_file, save_file

# Byte-level BPE size before the added tokens; the added tokens follow in SPECIAL_TOKENS order.
TRAINED_VOCAB = 896

# (content, special) in id order, mirroring Qwen2.5-Omni's added tokens; the two tool-call tokens are
# added but not special there, which exercises the USER_DEFINED token type.
ADDED_TOKENS = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|AUDIO|>", True),
    ("<|audio_bos|>", True),
    ("<|audio_eos|>", True),
    ("<|vision_bos|>", True),
    ("<|vision_eos|>", True),
    ("<|vision_pad|>", True),
    ("<|IMAGE|>", True),
    ("<|VIDEO|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
)
TOKEN_IDS = {content: TRAINED_VOCAB + i for i, (content, _) in enumerate(ADDED_TOKENS)}
TOKENIZER_SIZE = TRAINED_VOCAB + len(ADDED_TOKENS)

QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Text-model variants. Each sums its mrope sections to head_dim / 2, as Qwen2.5-Omni requires.
TEXT_CONFIGS = {
    # The shape of models.md's tiny config: GQA, untied head, vocab padded past the tokenizer.
    "base": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, mrope_section=[2, 3, 3], tie_word_embeddings=False),
    # Multi-head attention, tied embeddings (no lm_head tensor), vocab exactly the tokenizer's size.
    "mha_tied": dict(vocab_size=TOKENIZER_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=4, mrope_section=[2, 3, 3], tie_word_embeddings=True),
    # Four query heads per kv head with head_dim 8.
    "gqa4": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=8, num_key_value_heads=2, mrope_section=[1, 1, 2], tie_word_embeddings=False),
    # An FFN width that is not a multiple of 32, so ffn_down rows cannot be block-quantized.
    "odd_ffn": dict(vocab_size=1024, hidden_size=64, intermediate_size=200, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, mrope_section=[2, 3, 3], tie_word_embeddings=False),
    # Wider than the encoders' 64-wide output: a projector of another config does not fit it.
    "wide": dict(vocab_size=1024, hidden_size=96, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, mrope_section=[4, 4, 4], tie_word_embeddings=False),
}

_VISION_CONFIG = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64,
                      fullatt_block_indexes=[1], window_size=112, patch_size=14, temporal_patch_size=2,
                      spatial_merge_size=2, in_channels=3)
_AUDIO_CONFIG = dict(num_mel_bins=128, d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                     output_dim=64, n_window=100, max_source_positions=1500)

# Encoder variants (the text model as in "base"): four vision blocks, every second with full attention (the only
# layout the projector format expresses), three audio layers; three heads of 16, widths not a power of two.
ENCODER_CONFIGS = {
    "encoders_alt": (dict(_VISION_CONFIG, depth=4, hidden_size=48, num_heads=3, intermediate_size=80,
                          fullatt_block_indexes=[1, 3]),
                     dict(_AUDIO_CONFIG, d_model=48, encoder_layers=3, encoder_attention_heads=3, encoder_ffn_dim=96)),
}

# Tensors of the full Omni checkpoint that a text conversion must ignore.
_FULL_CHECKPOINT_EXTRAS = ("talker.model.norm.weight", "token2wav.code2wav_dit_model.proj.weight")

# Original English sentences to train the tokenizer on; varied enough to yield TRAINED_VOCAB - 256 merges.
_CORPUS = """\
The river runs past the old mill, and every morning the miller counts the sacks of grain twice.
She opened the window to let the cold air in; the kettle was already singing on the stove.
A stream of video arrives in small chunks, two seconds at a time, with the sound of the room beside it.
Memory is a budget: keep what matters, forget what repeats, and never grow past the limit you were given.
Why did the slide change when the speaker laughed? Nobody in the third row could remember it clearly.
Numbers like 42, 1024 and 3.14159 appear in tables, receipts, clocks and the margins of notebooks.
We walked along the harbour while fishing boats returned with gulls circling above their wakes.
Children were painting yellow suns and purple mountains on the long paper spread across the floor.
The library closes at nine o'clock, but the reading room stays open for students during exams.
He didn't know whether the train would leave on time, so he bought coffee and waited patiently.
Quiet forests hide foxes, owls, hedgehogs and deer; at dusk the birds begin their evening chorus.
Cooking rice well requires patience: rinse it, measure the water, and never lift the lid too soon.
Engineers measure latency, throughput and accuracy before they trust a new system in production.
The orchestra tuned their violins, cellos and flutes while the audience settled into velvet seats.
In winter the lake freezes solid and neighbours skate across it, laughing and shouting to each other.
Questions about the past need the right moments kept in memory, not every frame that was ever seen.
Her grandmother's recipe for apple pie used cinnamon, butter, brown sugar and a pinch of salt.
Satellites orbit the planet every ninety minutes, sending pictures of clouds, oceans and deserts.
They're building a bridge over the valley; it'll connect two villages that have been apart for years.
Sometimes the simplest explanation is correct, and sometimes it hides a subtle, surprising detail.
Thunder rolled over the hills as the farmers hurried to bring their sheep into the stone barn.
The museum displayed ancient coins, bronze helmets, painted vases and a map drawn by hand.
Please write clearly, check your sums, and hand in the exercise before Friday afternoon.
Good tools are small, sharp and well documented; they do one job and report errors plainly.
"""


def _qwen2_pretokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])


@functools.lru_cache(maxsize=None)
def _trained_tokenizer_json(vocab_size: int, corpus: tuple = (), exact_size: bool = True) -> str:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _qwen2_pretokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    lines = list(corpus) or _CORPUS.splitlines(keepends=True) * 4
    tok.train_from_iterator(lines, trainer=trainer)
    if exact_size and tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"the corpus yields {tok.get_vocab_size()} tokens, not {vocab_size}; "
                           "ask for a smaller vocab_size")
    for content, special in ADDED_TOKENS:
        token = AddedToken(content, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([token])
    return tok.to_str()


def train_tokenizer(out_dir, vocab_size: int = TRAINED_VOCAB, corpus: tuple = ()) -> pathlib.Path:
    """Write a Qwen2-style byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) to out_dir.

    vocab_size is the size of the trained byte-level part; ADDED_TOKENS follow it in order, so the ids in
    TOKEN_IDS hold only for the default size. With a `corpus` (lines of text) the tokenizer is trained on it
    and vocab_size is an upper bound: training stops when the corpus has no pair left to merge.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    out_dir = pathlib.Path(out_dir)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json(vocab_size, tuple(corpus), not corpus)),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None,
        model_max_length=32768, clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)  # inline, as Qwen2.5-Omni ships it
    return out_dir


def thinker_config_dict(config: str = "base") -> dict:
    """The Qwen2_5OmniThinkerConfig keyword arguments of a named tiny variant (see TEXT_CONFIGS)."""
    if config not in TEXT_CONFIGS and config not in ENCODER_CONFIGS:
        raise KeyError(f"unknown tiny config {config!r}; choose one of {sorted(TEXT_CONFIGS) + sorted(ENCODER_CONFIGS)}")
    text = dict(TEXT_CONFIGS.get(config, TEXT_CONFIGS["base"]))
    vision, audio = ENCODER_CONFIGS.get(config, (_VISION_CONFIG, _AUDIO_CONFIG))
    text["rope_scaling"] = {"mrope_section": text.pop("mrope_section"), "rope_type": "default"}
    text.update(max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6,
                bos_token_id=TOKEN_IDS["<|endoftext|>"], eos_token_id=TOKEN_IDS["<|im_end|>"],
                pad_token_id=TOKEN_IDS["<|endoftext|>"])
    return dict(
        text_config=text, vision_config=dict(vision), audio_config=dict(audio),
        audio_token_index=TOKEN_IDS["<|AUDIO|>"], image_token_index=TOKEN_IDS["<|IMAGE|>"],
        video_token_index=TOKEN_IDS["<|VIDEO|>"], audio_start_token_id=TOKEN_IDS["<|audio_bos|>"],
        audio_end_token_id=TOKEN_IDS["<|audio_eos|>"], vision_start_token_id=TOKEN_IDS["<|vision_bos|>"],
        vision_end_token_id=TOKEN_IDS["<|vision_eos|>"],
        tie_word_embeddings=text["tie_word_embeddings"], torch_dtype="float32",
    )


# Projection weights are drawn with std _GAIN/sqrt(fan_in): logits then spread with std about 1 (transformers'
# std 0.02 leaves them nearly flat), while larger gains measurably amplify quantization noise layer by layer.
_GAIN = 1.0


def _widen_init(model: torch.nn.Module, seed: int) -> None:
    """Redraw every parameter so activations and logits have spread (unit-variance projections, norms near 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                is_norm_scale = name.endswith("weight")
                p.copy_((1.0 if is_norm_scale else 0.0) + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen) * (_GAIN / math.sqrt(fan_in)))


def build_thinker(config: str = "base", seed: int = 0):
    """A transformers Qwen2_5OmniThinkerForConditionalGeneration with widened random weights, float32, eval."""
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen2_5OmniThinkerConfig(**thinker_config_dict(config))
    model = Qwen2_5OmniThinkerForConditionalGeneration(cfg).float().eval()
    _widen_init(model, seed)
    model.tie_weights()
    return model


def _state_dict_to_save(model) -> dict:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.text_config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # as save_pretrained does: a tied head is stored once
    return state


def _write_safetensors(state: dict, out_dir: pathlib.Path, shards: int) -> None:
    """Write model.safetensors, or `shards` files plus model.safetensors.index.json the way HF names them."""
    meta = {"format": "pt"}
    if shards <= 1:
        save_file(state, out_dir / "model.safetensors", metadata=meta)
        return
    names = sorted(state)
    groups = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for i, group in enumerate(groups, 1):
        fname = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n] for n in group}, out_dir / fname, metadata=meta)
        weight_map.update({n: fname for n in group})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def make_thinker(out_dir, config: str = "base", *, tokenizer: bool = True, full_checkpoint: bool = False,
                 shards: int = 1, seed: int = 0) -> pathlib.Path:
    """Save a tiny thinker as an HF checkpoint directory and return its path.

    full_checkpoint=False: a standalone thinker as save_pretrained writes it (tensor names without prefix,
    architectures Qwen2_5OmniThinkerForConditionalGeneration). full_checkpoint=True: the full Qwen2.5-Omni
    layout (tensors prefixed `thinker.`, a few talker/token2wav tensors, config with thinker_config).
    shards > 1 splits the weights over that many files with an index.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_thinker(config, seed)
    state = _state_dict_to_save(model)
    cfg = model.config.to_dict()
    cfg["architectures"] = ["Qwen2_5OmniThinkerForConditionalGeneration"]
    if full_checkpoint:
        gen = torch.Generator().manual_seed(seed + 1)
        state = {f"thinker.{k}": v for k, v in state.items()}
        state.update({k: torch.randn(8, 8, generator=gen) for k in _FULL_CHECKPOINT_EXTRAS})
        cfg = {"architectures": ["Qwen2_5OmniForConditionalGeneration"], "model_type": "qwen2_5_omni",
               "enable_audio_output": False, "thinker_config": cfg, "torch_dtype": "float32"}
    _write_safetensors(state, out_dir, shards)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    if tokenizer:
        train_tokenizer(out_dir)
    return out_dir


def _read_state_dict(ckpt_dir: pathlib.Path) -> dict:
    index = ckpt_dir / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    state = {}
    for fname in files:
        state.update(load_file(ckpt_dir / fname))
    return state


def load_thinker(ckpt_dir):
    """Load a directory written by make_thinker (either form) back into a float32 transformers thinker."""
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    ckpt_dir = pathlib.Path(ckpt_dir)
    cfg = json.loads((ckpt_dir / "config.json").read_text())
    cfg = copy.deepcopy(cfg.get("thinker_config", cfg))
    cfg.pop("architectures", None)
    state = _read_state_dict(ckpt_dir)
    if any(k.startswith("thinker.") for k in state):
        state = {k[len("thinker."):]: v for k, v in state.items() if k.startswith("thinker.")}
    model = Qwen2_5OmniThinkerForConditionalGeneration(Qwen2_5OmniThinkerConfig(**cfg)).float().eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if model.config.text_config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise RuntimeError(f"checkpoint in {ckpt_dir} does not fit the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


@torch.no_grad()
def reference_logits(model, token_ids) -> "torch.Tensor":
    """Logits [n_tokens, vocab] of a text-only prompt (whose three M-RoPE position rows are all 0..n-1)."""
    ids = torch.tensor([list(token_ids)], dtype=torch.long)
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float()


def checkpoint_tensors(ckpt_dir) -> dict:
    """Every tensor of a checkpoint directory (sharded or not) as numpy arrays, names without `thinker.`."""
    ckpt_dir = pathlib.Path(ckpt_dir)
    index = ckpt_dir / "model.safetensors.index.json"
    files = set(json.loads(index.read_text())["weight_map"].values()) if index.exists() else {"model.safetensors"}
    out = {}
    for f in files:
        out.update(safetensors.numpy.load_file(ckpt_dir / f))
    return {k.removeprefix("thinker."): v for k, v in out.items()}
