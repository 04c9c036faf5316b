"""AV-Recall data: seeded synthetic video-with-audio streams and exact-answer questions about them.

A stream is a mostly static scene (a textured background with a few coloured shapes in fixed slots) in
which rare visual events happen (an object appears, disappears, changes colour or moves), over an audio
track of background noise with rare sound events (two-tone patterns standing for symbols). Frames are
redundant like real video, and the default 336x308 frames at 2 fps give Qwen2.5-Omni 132 visual tokens
per second against 25 audio tokens (5.3:1). Questions ask about any moment — audio-only, visual-only or
cross-modal, in configurable proportions — with one-word or numeric answers from a small closed
vocabulary, so a tiny model can be trained on them and scored exactly.

Design: :mod:`.config` holds the JSON-serialisable :class:`AVRecallConfig`; :mod:`.events` draws the event
schedule and replays the scene state; :mod:`.questions` derives questions and answers from the events;
:mod:`.render` turns the timeline into 2-second chunks of uint8 RGB frames and float32 16 kHz PCM on
demand (hour-long streams never sit in memory) and writes mp4 files; :mod:`.layout` gives the language
model's input for a stream (embeddings and TMRoPE positions), to train on or to feed at other positions.
Everything random is seeded from ``config.seed`` and a fixed stream id per purpose, so the same config
gives the same stream and questions.

    from omnimem_cpp.avrecall import AVRecallConfig, AVRecallStream, write_mp4
    stream = AVRecallStream(AVRecallConfig(seconds=600, seed=3))
    for chunk in stream:                      # chunk.video [4, 308, 336, 3] uint8, chunk.audio [32000] float32
        ...
    stream.events, stream.questions           # Event / Question lists, each with to_dict()
    write_mp4(stream, "avrecall-3.mp4")

``MODEL`` and ``PROJECTOR`` are the paths of the small model trained on these streams, shipped in the package.
"""

from .bench import MODEL, PROJECTOR
from .config import AVRecallConfig
from .events import Event, Timeline
from .questions import KINDS, Question, all_questions, answer_vocabulary, family_counts, normalise_answer
from .render import AVRecallStream, write_mp4

__all__ = [
    "AVRecallConfig", "AVRecallStream", "Event", "KINDS", "MODEL", "PROJECTOR", "Question", "Timeline",
    "all_questions", "answer_vocabulary", "family_counts", "normalise_answer", "write_mp4",
]
