"""The `omnimem` command line.

    omnimem convert HF_DIR --outfile model.gguf --outtype q8_0
    omnimem info model.gguf
    omnimem run model.gguf --text "Some context ..." --ask "A question?"
    omnimem run model.gguf --mmproj mmproj.gguf --input talk.mp4 --policy omnimem --budget 8k --ask "..."
    omnimem calibrate model.gguf --mmproj mmproj.gguf clip1.mp4 clip2.mp4 --budget 8k -o budget.json
    omnimem demo

Exit codes: 0 success, 1 a runtime failure, 2 bad usage or input (missing file, bad option value).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Optional, Sequence

from .errors import InvalidArgumentError, ModelFileError, OmnimemError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    out = convert_checkpoint(args.hf_dir, args.outfile, args.outtype, mmproj=args.mmproj,
                             mmproj_outtype=args.mmproj_outtype, progress=not args.quiet)
    print(f"wrote {out}")
    if args.mmproj:
        print(f"wrote {args.mmproj}")
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    from .gguf_info import describe, format_info

    info = describe(args.file)
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from .model import Model

    options = dict(policy=args.policy, budget=args.budget, text_cap=args.text_cap, redundancy=args.redundancy,
                   neighbours=args.neighbours, n_ctx=args.n_ctx, kv_type=args.kv_type)
    with Model(args.model, mmproj=args.mmproj, n_threads=args.threads, device=args.device) as model:
        if args.resume:
            stream = model.load_stream(args.resume)
        else:
            stream = model.stream(system=args.system, **options)
        with stream:
            if args.interactive:
                return _interactive(stream, args)
            start = time.perf_counter()
            if args.text:
                stream.feed(args.text)
            if args.input:
                _feed_media(stream, args.input, quiet=args.json)
            ingest_s = time.perf_counter() - start
            answers = []
            for question in args.ask:
                start = time.perf_counter()
                if args.json:
                    answer = stream.ask(question, max_tokens=args.max_tokens, temperature=args.temperature,
                                        seed=args.seed)
                else:
                    print(f"Q: {question}\nA: ", end="", flush=True)
                    answer = ""
                    for piece in stream.ask(question, max_tokens=args.max_tokens, temperature=args.temperature,
                                            seed=args.seed, stream=True):
                        print(piece, end="", flush=True)
                        answer += piece
                    print()
                answers.append({"question": question, "answer": answer,
                                "seconds": round(time.perf_counter() - start, 3)})
            if args.save:
                stream.save(args.save)
            stats = stream.stats()
            if args.json:
                print(json.dumps({"model": args.model, "policy": stream.policy, "tokens_fed": stream.n_tokens,
                                  "ingest_seconds": round(ingest_s, 3), "kv_bytes": stats.kv_bytes,
                                  "kv_bytes_allocated": stats.kv_bytes_allocated, "rows": stats.rows,
                                  "compactions": stats.compactions, "answers": answers}, indent=2))
            else:
                print(f"memory: {stats.kv_bytes / 2**20:.1f} MiB in use of {stats.kv_bytes_allocated / 2**20:.1f} "
                      f"MiB, rows per layer on average {_rows_per_layer(stats)}, {stats.compactions} compactions",
                      file=sys.stderr)
    return EXIT_OK


def _interactive(stream, args: argparse.Namespace) -> int:
    """Ingests --input in the background while answering questions typed on the terminal; each answer sees
    everything ingested up to the moment it is asked (the stream's lock orders the two)."""
    import threading

    if args.text:
        stream.feed(args.text)
    failure: list[BaseException] = []
    stop = threading.Event()

    def ingest() -> None:
        from . import media

        try:
            with media.open(args.input) as reader:
                for chunk in reader:
                    if stop.is_set():
                        return
                    stream.feed(chunk)
            print("[the input has been ingested]", file=sys.stderr, flush=True)
        except BaseException as e:   # reported to the user from the main thread
            failure.append(e)

    worker = threading.Thread(target=ingest, daemon=True) if args.input else None
    if worker is not None:
        worker.start()
    print("Ask questions about the stream (an empty line or Ctrl-D ends).", file=sys.stderr, flush=True)
    try:
        for line in sys.stdin:
            question = line.strip()
            if not question:
                break
            if failure:
                raise failure[0]
            print("A: ", end="", flush=True)
            for piece in stream.ask(question, max_tokens=args.max_tokens, temperature=args.temperature,
                                    seed=args.seed, stream=True):
                print(piece, end="", flush=True)
            print(f"\n[{stream.n_tokens} tokens ingested]", flush=True)
    finally:
        stop.set()
        if worker is not None:
            worker.join()
    if failure:
        raise failure[0]
    return EXIT_OK


def _rows_per_layer(stats) -> str:
    n = max(len(stats.layers), 1)
    return ", ".join(f"{kind} {count / n:.0f}" for kind, count in stats.rows.items())


def _feed_media(stream, source: str, *, quiet: bool) -> None:
    """Streams a media file or URL into the stream chunk by chunk, with a progress bar."""
    from tqdm import tqdm

    from . import media

    with media.open(source) as reader:
        for chunk in tqdm(reader, total=reader.n_chunks, unit="chunk", desc="ingesting", disable=quiet):
            stream.feed(chunk)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate
    from .model import Model

    with Model(args.model, mmproj=args.mmproj, n_threads=args.threads, device=args.device) as model:
        table = calibrate(model, args.clips, budget=args.budget, temperature=args.temperature,
                          av_ratio=args.av_ratio, skip_chunks=args.skip_chunks, max_seconds=args.max_seconds)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)
    layers = table["layers"]
    audio = sum(a for a, _ in layers) / max(sum(a + v for a, v in layers), 1)
    print(f"wrote {args.output}: {len(layers)} layers, {table['average']} media rows per layer on average, "
          f"{audio:.0%} of them audio, first layer {layers[0]}, last layer {layers[-1]}")
    return EXIT_OK


def _cmd_bench_avrecall(args: argparse.Namespace) -> int:
    import pathlib

    from .avrecall.bench import (BenchSettings, CellCache, every_claim, format_claims, format_table, run_benchmark,
                                 write_report)

    options = {k: v for k, v in dict(
        minutes=args.minutes, budgets=args.budgets, policies=args.policies, seeds=args.seeds,
        skip_streams=args.skip_streams, questions=args.questions, threads=args.threads, model=args.model,
        mmproj=args.mmproj).items() if v is not None}
    settings = BenchSettings.quick(**options) if args.quick else BenchSettings(**options)
    if args.report and settings.skip_streams:
        raise InvalidArgumentError("a run with --skip-streams holds only some of the streams: write the report "
                                   "with a run over all of them that takes the cells from the same --cache")
    if args.report:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InvalidArgumentError("--report draws plots with matplotlib: pip install matplotlib") from None
    command = report_command(sys.argv)
    cache = CellCache(pathlib.Path(args.cache), settings.model, settings.mmproj) if args.cache else None
    start = time.perf_counter()

    written = []

    def report_so_far(rows: list, streams: dict) -> None:
        # after every stream, so that a long run stopped midway (Ctrl-C) keeps what it measured; the last
        # call writes the whole run's report
        written[:] = write_report(rows, settings, command, pathlib.Path(args.report), time.perf_counter() - start,
                                  streams, cache)

    rows = run_benchmark(settings, progress=not args.json, on_stream=report_so_far if args.report else None,
                         cache=cache)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"results": rows}))
    else:
        print(format_table(rows))
        found = every_claim(rows)
        if found:
            print("\nThe paper's claims at the longest length:\n" + format_claims(found))
        print(f"({seconds / 60:.1f} min)")
    for path in written:
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def _numbers(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return parse


def _names(text: str) -> tuple:
    return tuple(v for v in text.split(",") if v)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(n_threads=args.threads, clip_path=args.output)


def _thread_count(text: str) -> int:
    """argparse type of ``--threads``: refused at parse time, before anything is written or loaded."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_thread_count, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--device", default="auto", help="auto, cpu, or a ggml device name such as CUDA0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnimem",
        description="Stream audio-visual LLMs with a bounded KV cache (OmniMem) on small machines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  omnimem convert ./Qwen2.5-Omni-3B --outfile omni-3b-q8_0.gguf --outtype q8_0\n"
               "  omnimem info omni-3b-q8_0.gguf\n"
               "  omnimem run omni-3b-q8_0.gguf --text \"$(cat notes.txt)\" --ask \"Summarise the notes.\"\n"
               "  omnimem demo",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from .convert import OUTTYPES, PROJECTOR_OUTTYPES
    from .memory import NEIGHBOURS, POLICIES

    p = sub.add_parser(
        "convert", help="convert a Hugging Face Qwen2.5-Omni checkpoint to GGUF",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a Qwen2.5-Omni checkpoint directory (full model or thinker alone, safetensors) to a "
                    "text-model GGUF, and optionally its vision and audio encoders to a projector GGUF (mmproj), "
                    "that omnimem and llama.cpp load.",
        epilog="Example:\n  omnimem convert ./Qwen2.5-Omni-7B --outfile omni-7b-q8_0.gguf --outtype q8_0 "
               "--mmproj mmproj-omni-7b-q8_0.gguf")
    p.add_argument("hf_dir", help="checkpoint directory with config.json and *.safetensors")
    p.add_argument("--outfile", "-o", required=True, help="the GGUF file to write")
    p.add_argument("--outtype", default="f16", choices=OUTTYPES, help="weight type of 2-D tensors (default f16)")
    p.add_argument("--mmproj", metavar="FILE", help="also write the vision/audio projector GGUF to FILE")
    p.add_argument("--mmproj-outtype", choices=PROJECTOR_OUTTYPES,
                   help="weight type of the projector's matrices (default: --outtype, q8_0 for q4_0)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "info", help="describe a GGUF file", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print a GGUF file's architecture, hyperparameters, tokenizer, tensor types and size.",
        epilog="Example:\n  omnimem info omni-7b-q8_0.gguf --json")
    p.add_argument("file", help="a .gguf file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "run", help="stream text or media into a model and ask questions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load a model, feed text and/or a video into a stream under a memory policy and budget, and "
                    "answer questions about it.",
        epilog='Examples:\n  omnimem run model.gguf --text "Ann has 3 cats." --ask "How many cats?" --ask "Who?"\n'
               '  omnimem run model.gguf --mmproj mmproj.gguf --input talk.mp4 --policy omnimem --budget 8k \\\n'
               '      --ask "What was on the slide when the bell rang?"\n'
               '  omnimem run model.gguf --mmproj mmproj.gguf --input part1.mp4 --policy omnimem --budget 2GB '
               '--save talk.oms\n'
               '  omnimem run model.gguf --mmproj mmproj.gguf --resume talk.oms --input part2.mp4 --ask "And then?"\n'
               '  omnimem run model.gguf --mmproj mmproj.gguf --input rtsp://camera/stream --policy omnimem '
               '--budget 2GB -i')
    p.add_argument("model", help="text-model GGUF")
    p.add_argument("--mmproj", help="the projector GGUF (vision and audio encoders), needed for --input")
    p.add_argument("--input", help="a video or audio file (or URL) streamed in 2-second chunks")
    p.add_argument("--text", help="text fed into the stream (before --input)")
    p.add_argument("--ask", action="append", default=[], help="a question (repeatable)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", default="full", choices=tuple(POLICIES),
                   help="how memory is bounded (default full: keep everything)")
    p.add_argument("--budget", help="media rows kept per layer on average (8k), bytes of K/V memory (2GB), or a "
                                    "budget table from `omnimem calibrate` (budget.json)")
    p.add_argument("--text-cap", type=int, default=0, help="most text rows kept after the first media (0: all)")
    p.add_argument("--redundancy", default="value", choices=("value", "hidden"),
                   help="vectors omnimem compares neighbours with (hidden: exact, more memory)")
    p.add_argument("--neighbours", default="sequence", choices=tuple(NEIGHBOURS),
                   help="rows omnimem compares a row with (frame: a visual row's patch in the frames before "
                        "and after it; both: the sequence score times how much its frame changed)")
    p.add_argument("--interactive", "-i", action="store_true",
                   help="answer questions typed on the terminal while --input is ingested in the background")
    p.add_argument("--save", metavar="FILE", help="save the stream to FILE afterwards (resume with --resume)")
    p.add_argument("--resume", metavar="FILE", help="continue a stream saved with --save (memory options come "
                                                    "from the file)")
    p.add_argument("--n-ctx", type=int, default=4096, help="memory rows per layer of an unbounded (full) stream")
    p.add_argument("--kv-type", default="f16", choices=("f16", "f32"))
    _add_device_options(p)
    p.add_argument("--json", action="store_true", help="print the answers as JSON")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "calibrate", help="measure a model on sample clips and write a per-layer budget table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stream sample clips through the model, measure each layer's attention entropy and token "
                    "redundancy for audio and visual tokens, and allocate a budget over layers and modalities "
                    "as the OmniMem method does. The table (JSON) is what --budget / budget= take.",
        epilog="Example:\n  omnimem calibrate model.gguf --mmproj mmproj.gguf talk1.mp4 talk2.mp4 --budget 8k "
               "-o budget.json\n  omnimem run model.gguf --mmproj mmproj.gguf --input talk3.mp4 --policy omnimem "
               "--budget budget.json --ask \"...\"")
    p.add_argument("model", help="text-model GGUF")
    p.add_argument("clips", nargs="+", help="sample video/audio files (or URLs)")
    p.add_argument("--mmproj", required=True, help="the projector GGUF (vision and audio encoders)")
    p.add_argument("--budget", default="8k", help="media rows per layer on average (default 8k)")
    p.add_argument("--output", "-o", required=True, help="the JSON budget table to write")
    p.add_argument("--temperature", type=float, default=0.2, help="T of the softmax over layers (default 0.2)")
    p.add_argument("--av-ratio", type=float, default=5.0, help="r, visual weight against audio (default 5)")
    p.add_argument("--skip-chunks", type=int, default=5, help="chunks at each clip's start left out (default 5)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="seconds of each clip used (default 120)")
    _add_device_options(p)
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("bench", help="benchmarks (avrecall: accuracy against the memory budget; speed)",
                       description="Run a benchmark.")
    bench = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    p = bench.add_parser(
        "avrecall", help="question-answering accuracy per policy, budget and stream length",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stream generated AV-Recall videos (frames and sound through the encoders) into one stream per "
                    "policy and budget, plus `full` as the ceiling, then ask each stream the same questions about "
                    "what it saw and heard. Prints accuracy per question family and the K/V memory of each cell.",
        epilog="Examples:\n  omnimem bench avrecall --quick\n"
               "  omnimem bench avrecall --minutes 1,5,20 --budgets 128,256,512,1024 --report docs/ --cache runs/\n"
               "  omnimem bench avrecall --quick --json | jq '.results[] | select(.question_type == \"all\")'")
    p.add_argument("--quick", action="store_true", help="two 1-minute streams, budgets 128 and 512 (a few minutes "
                                                        "on 2 cores)")
    p.add_argument("--minutes", type=_numbers(float), help="stream lengths in minutes (default 1,5,20)")
    p.add_argument("--budgets", type=_numbers(int), help="media rows per layer (default 128,256,512,1024)")
    p.add_argument("--policies", type=_names,
                   help=f"bounded policies to compare, comma-separated, or \"\" for full alone (default: all of "
                        f"{', '.join(p for p in POLICIES if p != 'full')}); a policy may carry settings, "
                        "e.g. omnimem:lam=1:av_ratio=1 (lam, redundancy, neighbours, n_sink, seed, score_queries, "
                        "av_ratio, calibrated)")
    p.add_argument("--seeds", type=int, help="streams per length (default 3)")
    p.add_argument("--skip-streams", type=int, metavar="K",
                   help="leave out the first K streams of each length, e.g. to run them in another process "
                        "with the same --cache")
    p.add_argument("--questions", type=int, help="questions per stream (default 24)")
    p.add_argument("--model", help="text-model GGUF (default: the shipped AV-Recall model)")
    p.add_argument("--mmproj", help="its projector GGUF")
    p.add_argument("--json", action="store_true",
                   help='print {"results": [{policy, budget, minutes, question_type, accuracy, kv_bytes, n}]}')
    p.add_argument("--report", metavar="DIR", help="also write the tables (markdown, JSON) and PNG plots to DIR")
    p.add_argument("--threads", type=_thread_count, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--cache", metavar="DIR",
                   help="keep every cell's answers on every stream in DIR, keyed by the model files' contents; a "
                        "rerun takes what it finds there, so a run stopped midway goes on where it stopped, and "
                        "runs of other lengths, budgets or policies share the cells they have in common")
    p.set_defaults(func=_cmd_bench_avrecall)
    from .benchmarks import speed   # its options are the benchmark module's own

    p = bench.add_parser("speed", parents=[speed.build_parser(add_help=False)],
                         help="decode, prefill, long-stream and ingest speed beside llama.cpp",
                         description=speed.DESCRIPTION, epilog=speed.EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=speed.run)

    p = sub.add_parser("demo", help="the shipped model watches a generated clip under a budget and answers",
                       description="Write a one-minute AV-Recall clip (shapes and sounds) as an mp4, stream it "
                                   "through the small model shipped with the package under OmniMem with a budget, "
                                   "and print its answers to questions about the clip beside the truth, and the "
                                   "memory used. Needs no download.",
                       epilog="Example:\n  omnimem demo --output clip.mp4")
    p.add_argument("--threads", type=_thread_count, default=None,
                   help="CPU threads (default: 1; the model is tiny)")
    p.add_argument("--output", default="avrecall-demo.mp4", help="where the clip is written "
                                                                 "(default avrecall-demo.mp4)")
    p.set_defaults(func=_cmd_demo)
    return parser


def report_command(argv: Sequence[str]) -> str:
    """The command line a report says it was made by, quoted so that it can be pasted back into a shell
    (an empty ``--policies ""`` stays there); the arguments only when the process was started as
    ``omnimem bench avrecall``."""
    args = list(argv[3:]) if list(argv[1:3]) == ["bench", "avrecall"] else []
    return shlex.join(["omnimem", "bench", "avrecall", *args])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (InvalidArgumentError, ModelFileError, FileNotFoundError) as e:
        print(f"omnimem {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OmnimemError as e:
        print(f"omnimem {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE if not isinstance(e, ValueError) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
