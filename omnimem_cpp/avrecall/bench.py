"""`omnimem bench avrecall`: question-answering accuracy against the memory budget, for every policy.

Each AV-Recall stream is rendered chunk by chunk and fed, as real frames and PCM, into one stream per
cell (a policy at a budget, and ``full`` as the ceiling) in lockstep, so every cell sees the same media.
At the end each cell is asked the stream's questions (greedy, rolled back after each); an answer is right
when it equals the truth word for word. The seeds are the benchmark's own: the shipped model was trained
on other seeds only.

    from omnimem_cpp.avrecall.bench import BenchSettings, run_benchmark
    rows = run_benchmark(BenchSettings(minutes=(1,), budgets=(256,), seeds=2))
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import pathlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from ..calibrate import allocate, measure
from ..errors import InvalidArgumentError
from ..memory import AV_RATIO, MODALITIES, POLICIES, Budget
from .config import AUDIO_TOKENS_PER_SECOND, QUESTION_FAMILIES, AVRecallConfig
from .questions import KINDS, normalise_answer
from .render import AVRecallStream

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
MODEL = DATA / "avrecall-text.gguf"
PROJECTOR = DATA / "avrecall-mmproj.gguf"
ALL = "all"
MODALITY_AUDIO = MODALITIES["audio"]


@dataclass
class BenchSettings:
    """What one benchmark run covers.

    minutes: stream lengths; budgets: media rows kept per layer (tokens); policies: the bounded policies
    (``full`` always runs once per stream as the ceiling), each a name or a name with settings (see
    :func:`parse_policy`); seeds: streams per length; questions: asked of each stream (split over the
    families 30/40/30); skip_streams: how many of each length's first streams this run leaves out, so that
    processes sharing a cell cache can split the streams of a long run between them.
    """

    minutes: tuple = (1, 5, 20)
    budgets: tuple = (128, 256, 512, 1024)
    policies: tuple = tuple(p for p in POLICIES if p != "full")
    seeds: int = 3
    questions: int = 24
    skip_streams: int = 0
    threads: Optional[int] = None
    model: pathlib.Path = MODEL
    mmproj: pathlib.Path = PROJECTOR

    def __post_init__(self) -> None:
        # settings that cannot run fail here, before the first stream, not after it
        if not self.minutes or any(m <= 0 for m in self.minutes):
            raise InvalidArgumentError(f"stream lengths must be positive minutes, got {list(self.minutes)}")
        if any(b < 0 for b in self.budgets):
            raise InvalidArgumentError(f"budgets are media rows per layer and must not be negative, got {list(self.budgets)}")
        if self.seeds < 1:
            raise InvalidArgumentError(f"run at least one stream per length (--seeds), not {self.seeds}")
        if not 0 <= self.skip_streams < self.seeds:
            raise InvalidArgumentError(f"--skip-streams must leave at least one of the {self.seeds} streams per "
                                       f"length to run, not skip {self.skip_streams}")
        for spec in self.policies:
            parse_policy(spec)

    @classmethod
    def quick(cls, **overrides) -> "BenchSettings":
        """A few minutes on 2 cores: two 1-minute streams, two budgets."""
        return cls(**{**dict(minutes=(1,), budgets=(128, 512), seeds=2, questions=20), **overrides})


@dataclass
class StreamResult:
    """One cell on one stream: its answers and its memory."""

    policy: str
    budget: Optional[int]
    minutes: float
    seed: int
    kv_bytes: int
    sound_rows_kept: Optional[float] = None          # of the audio rows inside a sound, mean over layers
    audio_rows_kept: Optional[float] = None          # of all audio rows, mean over layers
    answers: list = field(default_factory=list)      # (family, kind, truth, answer)


MIN_QUESTIONS = 9       # three per family


def flag(value: str) -> bool:
    """A yes/no setting: 1, true or yes; 0, false or no."""
    try:
        return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}[value.lower()]
    except KeyError:
        raise ValueError(value) from None


# settings a policy spec may give, with their types: the stream's (see Stream), the budget's audio/visual
# split, and whether the budget is spread over layers and modalities by calibration (calibration_signals)
POLICY_SETTINGS = {"lam": float, "redundancy": str, "neighbours": str, "n_sink": int, "seed": int,
                   "score_queries": int, "av_ratio": float, "calibrated": flag}

# the streams a calibrated cell measures the model on: one minute each, seeds apart from the benchmark's (small
# numbers), the training streams' (1,000,000 to about 2,000,000) and the vision pretraining's (5,000,000 on)
CALIBRATION_SEED_BASE = 4_000_000
CALIBRATION_STREAMS = 4
_CALIBRATION: dict = {}        # (model file, projector file) -> signals


def calibration_signals(model) -> np.ndarray:
    """The method's per-layer signals (``omnimem_cpp.calibrate.measure``) of ``model`` on the calibration
    streams, measured once per model files in a process."""
    key = (model.path, model.mmproj)
    if key not in _CALIBRATION:
        streams = [AVRecallStream(AVRecallConfig(seconds=60.0, seed=CALIBRATION_SEED_BASE + i, n_questions=0))
                   for i in range(CALIBRATION_STREAMS)]
        _CALIBRATION[key] = measure(model, streams, progress=False)
    return _CALIBRATION[key]


@dataclass(frozen=True)
class PolicySpec:
    """A bounded policy with its settings, as a benchmark cell runs it: ``omnimem`` or, to try the policy's
    knobs, ``omnimem:lam=1:av_ratio=1`` (settings from POLICY_SETTINGS). The spec as written names the
    cell in the tables."""

    name: str
    policy: str
    settings: tuple = ()          # (key, value) pairs

    def stream(self, model, budget: int):
        """A stream of ``model`` under this policy with ``budget`` media rows per layer: split alike in every
        layer (audio 1 / (1 + av_ratio)), or, calibrated, by the method's allocation over layers and
        modalities from the model's signals on the calibration streams."""
        if self.calibrated:
            spread = Budget(table=self.calibrated_table(calibration_signals(model), budget))
        else:
            spread = Budget(tokens=budget, av_ratio=self.av_ratio)
        # the rest are the stream's own settings
        options = {k: v for k, v in self.settings if k not in ("av_ratio", "calibrated")}
        return model.stream(policy=self.policy, budget=spread, **options)

    @property
    def calibrated(self) -> bool:
        return dict(self.settings).get("calibrated", False)

    @property
    def av_ratio(self) -> float:
        return dict(self.settings).get("av_ratio", AV_RATIO)

    def calibrated_table(self, signals: np.ndarray, budget: int) -> list:
        """The per-layer (audio, visual) rows a calibrated cell of this spec keeps at ``budget``."""
        return allocate(signals, budget, av_ratio=self.av_ratio)


def parse_policy(spec: str) -> PolicySpec:
    """``"omnimem"`` or ``"omnimem:lam=1:redundancy=hidden"``; raises InvalidArgumentError on an unknown
    policy, setting or value."""
    policy, *pairs = spec.split(":")
    if policy not in POLICIES or policy == "full":
        raise InvalidArgumentError(f"unknown bounded policy {policy!r}; choose from "
                                   f"{', '.join(p for p in POLICIES if p != 'full')} (full always runs)")
    settings = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in POLICY_SETTINGS:
            raise InvalidArgumentError(f"cannot read {pair!r} in the policy {spec!r}: write KEY=VALUE with KEY one "
                                       f"of {', '.join(POLICY_SETTINGS)}, e.g. omnimem:lam=1:av_ratio=1")
        try:
            settings.append((key, POLICY_SETTINGS[key](value)))
        except ValueError:
            kind = "flag (1 or 0)" if POLICY_SETTINGS[key] is flag else POLICY_SETTINGS[key].__name__
            raise InvalidArgumentError(f"{key} in the policy {spec!r} must be a {kind}, "
                                       f"not {value!r}") from None
    return PolicySpec(spec, policy, tuple(settings))


def study_parser(doc: str, budgets: str, policies: str, policies_help: str) -> argparse.ArgumentParser:
    """Options of a script that feeds one benchmark stream to several cells (``scripts/``): ``--minutes`` and
    ``--seed`` pick the stream (:func:`study_stream`), ``--budgets`` and ``--policies`` the cells,
    ``--threads`` the CPU threads. ``doc`` is the script's docstring, whose first paragraph describes it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0, help="the benchmark's stream seed")
    parser.add_argument("--budgets", default=budgets, help="media rows per layer, comma-separated")
    parser.add_argument("--policies", default=policies, help=policies_help)
    parser.add_argument("--threads", type=int, default=None)
    return parser


def full_memory_parser(doc: str) -> argparse.ArgumentParser:
    """Options of a script that asks a model about the benchmark's first ``--seeds`` streams of ``--minutes``
    with the full memory (``scripts/``): ``--model`` and ``--mmproj`` (the shipped pair by default) and
    ``--threads``. ``doc`` is the script's docstring, whose first paragraph describes it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--model", default=str(MODEL), help="text GGUF (default: the shipped one)")
    parser.add_argument("--mmproj", default=str(PROJECTOR), help="projector GGUF (default: the shipped one)")
    parser.add_argument("--seeds", type=int, default=8, help="benchmark streams 0 .. SEEDS-1 (default 8)")
    parser.add_argument("--minutes", type=float, default=1.0, help="each stream's length (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    return parser


def study_stream(args: argparse.Namespace) -> AVRecallStream:
    """The benchmark stream a :func:`study_parser` picked, without questions."""
    return AVRecallStream(benchmark_config(args.minutes, args.seed, 0))


@contextlib.contextmanager
def study_cells(args: argparse.Namespace):
    """The stream a :func:`study_parser` picked, fed through the shipped model to a full memory and to every
    policy at every budget it names: yields ``(stream, cells)``, the cells as :func:`fed_cells` gives them."""
    from ..model import Model

    budgets = [int(b) for b in args.budgets.split(",")]
    specs = [parse_policy(p) for p in args.policies.split(",")]
    av = study_stream(args)
    with Model(MODEL, mmproj=PROJECTOR, n_threads=args.threads, encoder_cache=1) as model, \
            fed_cells(model, av, [(spec, b) for spec in specs for b in budgets]) as cells:
        yield av, cells


def audio_rows(rows: np.ndarray) -> tuple:
    """The audio rows among ``rows`` (:meth:`Stream.layer_rows` of a memory that keeps every row), and each
    one's index from the first audio row: the audio tower's 25 rows a second are also the M-RoPE temporal
    rate, so index / 25 is the row's time in the stream."""
    audio = rows[rows["modality"] == MODALITY_AUDIO]
    times = audio["pos"][:, 0]
    return audio, times - (times.min() if len(audio) else 0)


def sound_rows(rows: np.ndarray, timeline) -> tuple:
    """The tokens of the audio rows among ``rows`` (:meth:`Stream.layer_rows` of a memory that keeps every
    row), and those of them that lie inside a sound event."""
    audio, index = audio_rows(rows)
    seconds = index / AUDIO_TOKENS_PER_SECOND
    inside = np.zeros(len(audio), bool)
    for e in timeline.events:
        if e.kind == "sound":
            inside |= (seconds >= e.time) & (seconds < e.time + e.duration)
    return audio["token"], audio["token"][inside]


def shares_kept(stream, *token_sets: np.ndarray) -> list:
    """For each set of tokens, the share the stream's memory keeps, mean over its layers (None for an empty
    set). Each layer's rows are read once for all the sets."""
    kept = [stream.layer_tokens(il) for il in range(stream.model.info.n_layer)]
    return [float(np.mean([np.isin(tokens, k).mean() for k in kept])) if len(tokens) else None
            for tokens in token_sets]


# Streams this long introduce their objects and sounds over most of their length: with six of each at three
# events a minute, every first appearance and first sound would otherwise fall in a long stream's first minutes,
# and with them the evidence of most questions (shorter streams spread it over their length as they are).
LONG_STREAM_MINUTES = 10.0
LONG_STREAM_INTRODUCE_OVER = 0.8


def benchmark_config(minutes: float, seed: int, n_questions: int) -> AVRecallConfig:
    """The benchmark's stream of this length and seed (see LONG_STREAM_MINUTES)."""
    return AVRecallConfig(seconds=60.0 * minutes, seed=seed, n_questions=n_questions,
                          introduce_over=LONG_STREAM_INTRODUCE_OVER if minutes >= LONG_STREAM_MINUTES else 0.0)


def stream_configs(minutes: float, n: int, questions: int) -> list:
    """The first ``n`` seeds whose stream of this length can be asked at least MIN_QUESTIONS questions (or
    ``questions`` if fewer); each gets as many as it can up to ``questions`` (a one-minute stream has only a
    few events to ask about)."""
    if questions < 1:
        raise InvalidArgumentError(f"ask at least one question per stream, not {questions}")
    configs, seed = [], 0
    while len(configs) < n:
        for n_questions in range(questions, min(questions, MIN_QUESTIONS) - 1, -1):
            cfg = benchmark_config(minutes, seed, n_questions)
            try:
                AVRecallStream(cfg)
            except ValueError:
                continue        # too few events of some kind for this many questions
            configs.append(cfg)
            break
        seed += 1
    return configs


TENTHS = 10


def evidence_by_tenth(configs: list) -> np.ndarray:
    """The share of the streams' questions whose latest needed moment falls in each tenth of their stream: a
    question's ``ask_after``, when the last event it is about has happened (the whole stream for a count, or
    for something that never happened). The rows a memory must hold for a question lie up to there."""
    tenth = [min(int(q.ask_after / cfg.seconds * TENTHS), TENTHS - 1)
             for cfg in configs for q in AVRecallStream(cfg).questions]
    return np.bincount(tenth, minlength=TENTHS) / max(1, len(tenth))


FULL = ("full", None)


def full_memory_rows(config: AVRecallConfig) -> int:
    """Rows per layer a full memory needs for the stream, with room for a question and its answer."""
    return int(config.media_tokens) + 256


@contextlib.contextmanager
def fed_cells(model, av: AVRecallStream, cells, progress: bool = True, full: bool = True):
    """Streams of ``model`` fed every chunk of ``av`` in lockstep, their media closed, as {(policy, budget):
    stream}: the full memory as FULL (unless not ``full``), then each (:class:`PolicySpec`, budget) of
    ``cells``. They are closed on leaving the block."""
    config = av.config
    streams = {}
    try:
        if full:
            streams[FULL] = model.stream(n_ctx=full_memory_rows(config))
        for spec, budget in cells:
            streams[(spec.name, budget)] = spec.stream(model, budget)
        label = f"{config.seconds / 60:g} min, seed {config.seed}"
        for chunk in tqdm(av, total=len(av), unit="chunk", desc=label, disable=not progress, leave=False):
            for s in streams.values():
                s.feed(chunk)
        for s in streams.values():
            s.close_media()
        yield streams
    finally:
        for s in streams.values():
            s.close()


class CellCache:
    """Each cell's result on one stream, as a JSON file in ``folder`` named by a digest of the model files'
    contents, the stream's config and the cell: a run that finds a cell's file does not run that cell again.
    So a long run stopped midway goes on where it stopped, and runs of other lengths, budgets or policies
    with the same model share what they have in common. ``taken`` and ``stored`` count the cells read from the
    folder and the cells run and written to it, so a report can say how much of it earlier runs measured."""

    VERSION = 2     # of the stored form and of what a cell measures; bump it when either changes (2: score_queries)
    # a policy whose selection changed since VERSION: its cells are run again, the others' kept (1: uniform
    # and random rank rows over the whole stream)
    POLICY_REVISIONS = {"uniform": 1, "random": 1}
    # config fields added since VERSION, left out of the key at these values, which give the streams of before
    ADDED_CONFIG_FIELDS = {"introduce_over": 0.0}

    def __init__(self, folder: pathlib.Path, model: pathlib.Path, mmproj: pathlib.Path):
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files = [hashlib.sha256(pathlib.Path(f).read_bytes()).hexdigest() for f in (model, mmproj)]
        self.taken = self.stored = 0

    def _path(self, config: AVRecallConfig, cell: tuple) -> pathlib.Path:
        revision = self.POLICY_REVISIONS.get(parse_policy(cell[0]).policy, 0) if cell != FULL else 0
        stream = {k: v for k, v in dataclasses.asdict(config).items()
                  if k not in self.ADDED_CONFIG_FIELDS or v != self.ADDED_CONFIG_FIELDS[k]}
        key = json.dumps([self.VERSION, self.files, stream, list(cell)]
                         + ([revision] if revision else []), sort_keys=True)
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def get(self, config: AVRecallConfig, cell: tuple) -> Optional[StreamResult]:
        path = self._path(config, cell)
        if not path.exists():
            return None
        stored = json.loads(path.read_text())
        self.taken += 1
        return StreamResult(**{**stored, "answers": [tuple(a) for a in stored["answers"]]})

    def put(self, config: AVRecallConfig, result: StreamResult) -> None:
        path = self._path(config, (result.policy, result.budget))
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(dataclasses.asdict(result)))
        partial.replace(path)       # a run killed while writing leaves no half file behind
        self.stored += 1


def ask_questions(stream, questions) -> list:
    """Each question asked of ``stream`` (greedy, a few tokens, rolled back after), as (family, kind, truth,
    answer) with the answer normalised as the truth is."""
    return [(q.family, q.kind, q.answer, normalise_answer(stream.ask(q.text, max_tokens=4))) for q in questions]


def run_stream(model, config: AVRecallConfig, settings: BenchSettings, progress: bool = True,
               cache: Optional[CellCache] = None) -> list:
    """Feeds one AV-Recall stream into every cell (FULL first, then each policy at each budget) and asks it the
    stream's questions. Cells found in ``cache`` are taken from it; the others are run (with FULL, whose
    rows tell where the sounds are) and stored there."""
    wanted = [(spec, budget) for spec in map(parse_policy, settings.policies) for budget in settings.budgets]
    cells = [FULL] + [(spec.name, budget) for spec, budget in wanted]
    found = {}
    if cache is not None:
        for cell in cells:
            if (result := cache.get(config, cell)) is not None:
                found[cell] = result
    missing = [(spec, budget) for spec, budget in wanted if (spec.name, budget) not in found]
    if missing or FULL not in found:
        av = AVRecallStream(config)
        with fed_cells(model, av, missing, progress) as streams:
            audio, sounds = sound_rows(streams[FULL].layer_rows(0), av.timeline)
            for (policy, budget), s in streams.items():
                if (policy, budget) in found:
                    continue            # FULL, fed again only for where the sounds are
                sounds_kept, audio_kept = shares_kept(s, sounds, audio)
                result = StreamResult(policy, budget, config.seconds / 60, config.seed, s.stats().kv_bytes,
                                      sound_rows_kept=sounds_kept, audio_rows_kept=audio_kept)
                result.answers = ask_questions(s, av.questions)
                found[(policy, budget)] = result
                if cache is not None:
                    cache.put(config, result)
    return [found[cell] for cell in cells]


def _mean(values) -> Optional[float]:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 4) if known else None


def summarise(results: list) -> list:
    """Accuracy rows ``{policy, budget, minutes, question_type, accuracy, kv_bytes, n, correct,
    sound_rows_kept, audio_rows_kept}``: per family, per kind and ``"all"``, over every stream of a cell.
    ``correct`` is one character per question, "1" right and "0" wrong, streams in the order run and each
    stream's questions as asked, so two cells' strings line up question by question (:func:`sign_test`).
    kv_bytes and the shares of the sounds' audio rows and of all audio rows that the memory kept at the end
    are the cell's, means over its streams."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r.policy, r.budget, r.minutes), []).append(r)
    rows = []
    for (policy, budget, minutes), rs in sorted(groups.items(), key=lambda g: (g[0][2], g[0][0], g[0][1] or 0)):
        answers = [a for r in rs for a in r.answers]
        kv_bytes = int(round(sum(r.kv_bytes for r in rs) / len(rs)))
        kept = dict(sound_rows_kept=_mean(r.sound_rows_kept for r in rs),
                    audio_rows_kept=_mean(r.audio_rows_kept for r in rs))
        types = [ALL] + [f for f in QUESTION_FAMILIES] + [k for f in QUESTION_FAMILIES for k in KINDS[f]]
        for t in types:
            picked = [a for a in answers if t in (ALL, a[0], a[1])]
            if picked:
                correct = "".join("1" if a[2] == a[3] else "0" for a in picked)
                rows.append(dict(policy=policy, budget=budget, minutes=minutes, question_type=t,
                                 accuracy=round(correct.count("1") / len(picked), 4),
                                 kv_bytes=kv_bytes, n=len(picked), correct=correct, **kept))
    return rows


def run_benchmark(settings: BenchSettings, progress: bool = True,
                  on_stream: Optional[Callable[[list, dict], None]] = None,
                  cache: Optional[CellCache] = None) -> list:
    """Runs every stream of the settings, shortest first, and returns the summary rows (see :func:`summarise`).
    After each stream, ``on_stream(rows, streams)`` gets the summary so far and the streams run per length
    ({minutes: count}), so a long run stopped midway keeps what it measured. With ``cache``, each cell's result
    is kept in its folder and taken from there by later runs (:class:`CellCache`)."""
    from ..model import Model

    results, streams = [], {}
    # the cells are fed in lockstep, so one cached output per tower lets each chunk be encoded once for all
    with Model(settings.model, mmproj=settings.mmproj, n_threads=settings.threads, encoder_cache=1) as model:
        jobs = [cfg for m in settings.minutes
                for cfg in stream_configs(m, settings.seeds, settings.questions)[settings.skip_streams:]]
        for cfg in tqdm(jobs, unit="stream", desc="AV-Recall", disable=not progress):
            results += run_stream(model, cfg, settings, progress, cache)
            streams[cfg.seconds / 60] = streams.get(cfg.seconds / 60, 0) + 1
            if on_stream:
                on_stream(summarise(results), dict(streams))
    return summarise(results)


# --- the paper's claims -----------------------------------------------------------------------------------

# the policies OmniMem is measured against; omnimem-nosplit is its own ablation (one pool for both modalities)
BASELINES = ("sink-window", "attention-topk", "uniform", "random")
CLAIM_MARGIN = 0.03          # OmniMem's margin over the best baseline in the paper
CLAIM_SHARE = 0.10           # at budgets holding at most this share of the stream's tokens
# a claim row's keys for each paired comparison: questions only omnimem got right, only the other side, p-value
PAIRED_KEYS = {"margin": ("only_omnimem_right", "only_baseline_right", "margin_p_value"),
               "audio": ("audio_only_omnimem_right", "audio_only_nosplit_right", "audio_p_value")}


def sign_test(wins: int, losses: int) -> float:
    """The two-sided exact sign test on paired answers (McNemar's exact test): ``wins`` questions only the
    first cell got right, ``losses`` only the second. It is the chance of a split at least this uneven if
    each of those questions were equally likely to go either way; the questions both got right or both got
    wrong say nothing about which is better."""
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def _paired(first: dict, second: dict) -> Optional[tuple]:
    """(questions only ``first`` got right, questions only ``second`` got right, the sign test's p-value) for
    two summary rows over the same questions; None when either lacks its per-question answers."""
    a, b = first.get("correct"), second.get("correct")
    if not a or not b or len(a) != len(b):
        return None
    wins, losses = sum(x > y for x, y in zip(a, b)), sum(x < y for x, y in zip(a, b))
    return wins, losses, round(sign_test(wins, losses), 4)


def every_claim(rows: list) -> list:
    """:func:`claims` of ``omnimem`` and of each variant of it the rows have (``omnimem:neighbours=frame``,
    ...), in that order."""
    methods = {r["policy"] for r in rows if r["policy"].split(":")[0] == "omnimem"}
    return [c for method in sorted(methods, key=lambda p: (p != "omnimem", p)) for c in claims(rows, method)]


def claims(rows: list, method: str = "omnimem") -> list:
    """The paper's two claims at the longest stream length, one row per budget that holds at most
    CLAIM_SHARE of that stream's media tokens per layer: ``method`` (``omnimem`` or a variant of it) against
    the best baseline on all questions (met when ahead by CLAIM_MARGIN or more), and against
    ``omnimem-nosplit`` with the same settings (or, where the rows have none, the plain one) on the audio
    ones (met when not behind). Where the rows carry their per-question answers, each comparison also says
    how many questions only one side got right and how likely so uneven a split is by chance
    (:func:`sign_test`; with a few streams, a margin of several points can be noise). Budgets or policies
    the rows do not have are left out."""
    overall = [r for r in rows if r["budget"] is not None]
    if not overall:
        return []
    minutes = max(r["minutes"] for r in overall)
    cfg = AVRecallConfig(seconds=60.0 * minutes)
    tokens = cfg.media_tokens
    cell = {(r["policy"], r["budget"], r["question_type"]): r for r in overall if r["minutes"] == minutes}
    acc = {key: r["accuracy"] for key, r in cell.items()}
    nosplit = "omnimem-nosplit" + method[len("omnimem"):]
    nosplit = nosplit if any(p == nosplit for p, _, _ in acc) else "omnimem-nosplit"
    out = []
    for budget in sorted({b for _, b, _ in acc}):
        omnimem = acc.get((method, budget, ALL))
        baselines = {p: acc[(p, budget, ALL)] for p in BASELINES if (p, budget, ALL) in acc}
        if omnimem is None or not baselines or budget > CLAIM_SHARE * tokens:
            continue
        best = max(baselines, key=lambda p: (baselines[p], p))
        row = dict(method=method, minutes=minutes, budget=budget, share=round(budget / tokens, 4), omnimem=omnimem,
                   best_baseline=best, best_baseline_accuracy=baselines[best],
                   margin=round(omnimem - baselines[best], 4),
                   margin_met=omnimem - baselines[best] >= CLAIM_MARGIN - 1e-9)
        if paired := _paired(cell[(method, budget, ALL)], cell[(best, budget, ALL)]):
            row.update(zip(PAIRED_KEYS["margin"], paired))
        audio, pooled = acc.get((method, budget, "audio")), acc.get((nosplit, budget, "audio"))
        if audio is not None and pooled is not None:
            row.update(nosplit=nosplit, omnimem_audio=audio, nosplit_audio=pooled, audio_met=audio >= pooled)
            if paired := _paired(cell[(method, budget, "audio")], cell[(nosplit, budget, "audio")]):
                row.update(zip(PAIRED_KEYS["audio"], paired))
        out.append(row)
    return out


def _split(claim: dict, comparison: str) -> str:
    """``; 9 to 4, p = 0.27``: the questions only omnimem and only the other side got right, and the sign
    test's p-value, where the claim has them (``comparison``: a key of PAIRED_KEYS)."""
    only_omnimem, only_other, p_value = PAIRED_KEYS[comparison]
    return f"; {claim[only_omnimem]} to {claim[only_other]}, p = {claim[p_value]:.2g}" if p_value in claim else ""


def format_claims(found: list) -> str:
    """Rows of :func:`claims` as a markdown table."""
    lines = ["| minutes | budget (share of tokens) | omnimem | best baseline | margin (≥ +3 pts?; questions "
             "only omnimem / only the baseline got right, sign test) | omnimem / nosplit on audio (≥?) |",
             "|---|---|---|---|---|---|"]
    methods = {c.get("method", "omnimem") for c in found}
    for c in found:
        audio = (f"{c['omnimem_audio']:.0%} / {c['nosplit_audio']:.0%} ({'yes' if c['audio_met'] else 'no'}"
                 f"{_split(c, 'audio')})" if "audio_met" in c else "–")
        method = f"`{c['method']}` " if methods != {"omnimem"} else ""
        lines.append(f"| {c['minutes']:g} | {c['budget']} ({c['share']:.1%}) | {method}{c['omnimem']:.0%} | "
                     f"{c['best_baseline']} {c['best_baseline_accuracy']:.0%} | "
                     f"{c['margin'] * 100:+.0f} pts ({'yes' if c['margin_met'] else 'no'}{_split(c, 'margin')}) | "
                     f"{audio} |")
    return "\n".join(lines)


# --- reports ------------------------------------------------------------------------------------------------

def _cell(row: dict) -> str:
    return "full" if row["budget"] is None else f"{row['policy']} @ {row['budget']}"


def format_table(rows: list, question_types: tuple = (ALL,) + QUESTION_FAMILIES) -> str:
    """A markdown table: one line per stream length and cell, accuracy per question type, K/V bytes."""
    index = {(r["minutes"], r["policy"], r["budget"], r["question_type"]): r for r in rows}
    cells = sorted({(r["minutes"], r["policy"], r["budget"]) for r in rows},
                   key=lambda c: (c[0], c[2] is not None, c[2] or 0, c[1]))
    lines = ["| minutes | policy @ budget | " + " | ".join(question_types) + " | K/V | sound rows kept (all audio) |",
             "|---|---|" + "---|" * len(question_types) + "---|---|"]
    for minutes, policy, budget in cells:
        got = [index.get((minutes, policy, budget, t)) for t in question_types]
        first = next((r for r in got if r), None)
        if first is None:
            continue            # no question of these types was asked of this cell
        accs = [f"{r['accuracy']:.0%}" if r else "–" for r in got]
        kept = ("–" if first.get("sound_rows_kept") is None else
                f"{first['sound_rows_kept']:.0%} ({first['audio_rows_kept']:.0%})")
        lines.append(f"| {minutes:g} | {_cell(first)} | " + " | ".join(accs) +
                     f" | {first['kv_bytes'] / 1024:,.0f} KiB | {kept} |")
    return "\n".join(lines)


def plot(rows: list, out_dir: pathlib.Path) -> list:
    """accuracy vs budget (at the longest length; only when a bounded policy ran) and accuracy vs length (at
    each policy's smallest budget, and the full memory); returns the PNG paths. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = [r for r in rows if r["question_type"] == ALL]
    longest = max(r["minutes"] for r in overall)
    budgets = sorted({r["budget"] for r in overall if r["budget"] is not None})
    policies = sorted({r["policy"] for r in overall if r["budget"] is not None})
    paths = []

    if budgets:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for policy in policies:
            pts = sorted((r["budget"], r["accuracy"]) for r in overall if r["policy"] == policy and r["minutes"] == longest)
            ax.plot(*zip(*pts), marker="o", label=policy)
        full = [r["accuracy"] for r in overall if r["budget"] is None and r["minutes"] == longest]
        if full:
            ax.axhline(full[0], color="black", linestyle="--", label="full (no bound)")
        ax.set(xscale="log", xlabel="budget (media rows per layer)", ylabel="accuracy",
               title=f"AV-Recall, {longest:g}-minute streams", ylim=(0, 1.02))
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / "avrecall_budget.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    smallest = budgets[0] if budgets else None
    for policy in policies:
        pts = sorted((r["minutes"], r["accuracy"]) for r in overall if r["policy"] == policy and r["budget"] == smallest)
        ax.plot(*zip(*pts), marker="o", label=f"{policy} @ {smallest}")
    pts = sorted((r["minutes"], r["accuracy"]) for r in overall if r["budget"] is None)
    ax.plot(*zip(*pts), marker="s", color="black", linestyle="--", label="full (no bound)")
    ax.set(xscale="log", xlabel="stream length (minutes)", ylabel="accuracy", title="AV-Recall: accuracy vs length",
           ylim=(0, 1.02))
    minutes = sorted({r["minutes"] for r in overall})
    ax.set_xticks(minutes, [f"{m:g}" for m in minutes])
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "avrecall_length.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def settings_json(settings: BenchSettings) -> dict:
    """The settings as JSON, model files by name (a report does not carry the paths of the machine it ran on)."""
    return {k: (pathlib.Path(v).name if k in ("model", "mmproj") else v)
            for k, v in dataclasses.asdict(settings).items()}


def calibrated_tables(settings: BenchSettings) -> list:
    """The budget table of each calibrated cell of ``settings``, as {policy, budget, layers}."""
    specs = [spec for spec in map(parse_policy, settings.policies) if spec.calibrated]
    if not specs:
        return []
    from ..model import Model

    with Model(settings.model, mmproj=settings.mmproj, n_threads=settings.threads) as model:
        signals = calibration_signals(model)
    return [{"policy": spec.name, "budget": budget, "layers": [list(p) for p in spec.calibrated_table(signals, budget)]}
            for spec in specs for budget in settings.budgets]


def write_report(rows: list, settings: BenchSettings, command: str, out_dir: pathlib.Path, seconds: float,
                 streams: Optional[dict] = None, cache: Optional[CellCache] = None) -> list:
    """docs-ready files: avrecall-results.json, avrecall-results.md (the tables) and the two plots. ``streams``
    ({minutes: count}, as :func:`run_benchmark` reports them) marks a run stopped before all its streams;
    ``cache``, the run's cell cache, says how many cells earlier runs measured (``seconds`` is this run's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    found = every_claim(rows)
    evidence = {m: evidence_by_tenth(stream_configs(m, settings.seeds, settings.questions)) for m in settings.minutes}
    streams = streams or {m: settings.seeds for m in settings.minutes}
    complete = all(streams.get(m, 0) >= settings.seeds for m in settings.minutes)
    tables = calibrated_tables(settings)
    (out_dir / "avrecall-results.json").write_text(json.dumps(
        {"command": command, "settings": settings_json(settings), "seconds": round(seconds), "complete": complete,
         "streams": [{"minutes": m, "streams": streams.get(m, 0)} for m in settings.minutes], "results": rows,
         "claims": found, "evidence_by_tenth": [{"minutes": m, "shares": [round(float(v), 4) for v in shares]}
                                                for m, shares in evidence.items()],
         "calibrated_budgets": tables,
         "cells_from_cache": cache.taken if cache else 0,
         "cells_run": cache.stored if cache else None}, indent=1))
    kinds = tuple(k for f in QUESTION_FAMILIES for k in KINDS[f])
    made = f"Made by `{command}` in {seconds / 60:.0f} min."
    if not complete:
        made += (" The run was stopped before its last streams; it holds " +
                 ", ".join(f"{streams.get(m, 0)} of {settings.seeds} {m:g}-minute streams" for m in settings.minutes)
                 + ".")
    if cache and cache.taken:
        made += (f" {cache.taken} of its {cache.taken + cache.stored} cell results were taken from the cell cache "
                 "(`--cache`), measured by earlier runs; the time is this run's.")
    text = [made, "", format_table(rows), "", "By question kind:", "", format_table(rows, kinds), ""]
    if found:
        text += ["The paper's claims at the longest length (budgets of at most "
                 f"{CLAIM_SHARE:.0%} of its tokens; baselines: {', '.join(BASELINES)}):", "", format_claims(found), ""]
    text += ["Where the questions' evidence ends, by tenth of the stream (the share of a length's questions whose "
             "latest needed moment falls in each tenth; a memory must hold rows from up to there):", "",
             "| minutes | " + " | ".join(str(k + 1) for k in range(TENTHS)) + " |", "|---|" + "---|" * TENTHS]
    text += [f"| {m:g} | " + " | ".join(f"{v:.0%}" for v in shares) + " |" for m, shares in evidence.items()] + [""]
    if tables:
        text += [f"The calibrated cells' budgets: audio + visual rows of each layer, as the method allocates them "
                 f"from the model's signals on {CALIBRATION_STREAMS} one-minute calibration streams (seeds "
                 f"{CALIBRATION_SEED_BASE:,} on):", ""]
        text += [f"- {t['policy']} @ {t['budget']}: " + ", ".join(f"{a} + {v}" for a, v in t["layers"]) +
                 f" ({sum(a for a, _ in t['layers']) / max(1, sum(a + v for a, v in t['layers'])):.0%} audio)"
                 for t in tables] + [""]
    (out_dir / "avrecall-results.md").write_text("\n".join(text))
    return [out_dir / "avrecall-results.json", out_dir / "avrecall-results.md"] + plot(rows, out_dir)
