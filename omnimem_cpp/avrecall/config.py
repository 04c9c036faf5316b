"""The generator's configuration: one JSON-serialisable dataclass that fixes a stream and its questions."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

# Qwen2.5-Omni's token rules: the vision encoder cuts frames into 14x14 patches, merges 2x2 of them and
# pairs frames in time, so every 2 frames give (H/28)*(W/28) tokens; the audio encoder gives 25 tokens/s.
# Video frames are resized to hold 128..768 of those merged cells, so frames within that range go in as drawn.
PATCH_PIXELS = 28
VIDEO_CELLS = (128, 768)
FRAMES_PER_VISUAL_GROUP = 2
AUDIO_TOKENS_PER_SECOND = 25

QUESTION_FAMILIES = ("audio", "visual", "cross")


@dataclass
class AVRecallConfig:
    """Everything that determines an AV-Recall stream; the same config (seed included) gives the same media,
    events and questions, byte for byte.

    Fields:
        seconds: the stream's length in seconds (any positive length; chunks are ``chunk_seconds`` long,
            the last one shorter when the length is not a multiple).
        seed: seeds every random choice (events, questions, textures, noise).
        width, height: frame size in pixels: multiples of 28 whose 28-px cells number 128..768, so the
            vision encoder sees frames unresized. The default 336x308 gives 132 visual tokens per second
            against 25 audio tokens (5.3:1).
        fps: frames per second of the delivered video (Qwen2.5-Omni samples at 2).
        sample_rate: audio samples per second (16 kHz mono float32, what the audio encoder takes).
        chunk_seconds: length of a delivered chunk.
        visual_events_per_minute, sound_events_per_minute: mean rates of the rare events.
        min_event_gap: the fewest seconds between two events of the same modality, so that every
            question about a moment has exactly one answer.
        cross_modal_gap: the fewest seconds between a sound and any visual event around it, so the
            scene is unambiguous while a sound plays.
        sound_seconds: how long a sound event lasts.
        scene_seconds: mean seconds between background changes (scene cuts; not asked about).
        objects: shapes that can appear (each is on screen at most once, so "the square" is unambiguous);
            known shapes: circle, square, triangle, cross, diamond, ring, bar, plus.
        colours: colour names an object can have (known: red, green, blue, yellow, purple, orange,
            white, cyan).
        slots: names of the screen positions an object can occupy, placed left to right in this order
            on the frame's middle line; at most one object per slot.
        symbols: names of the informative sounds; each is a distinct pair of tones.
        noise_level: RMS of the background noise relative to full scale.
        n_questions: how many questions to generate.
        question_mix: the share of audio-only, visual-only and cross-modal questions (normalised;
            counts are rounded by largest remainder so they sum to ``n_questions``).
        max_count: the largest number a counting question may have as its answer.
        introduce_over: the share of the stream over which the objects and the sounds are introduced, one
            after another at even intervals in a seeded order (0: all of them from the start). On a long
            stream every first appearance and first sound otherwise happens within its first minutes, and so
            does the evidence of most questions; introduced over the stream, they are about any moment.
    """

    seconds: float = 1200.0
    seed: int = 0
    width: int = 336
    height: int = 308
    fps: float = 2.0
    sample_rate: int = 16000
    chunk_seconds: float = 2.0
    visual_events_per_minute: float = 3.0
    sound_events_per_minute: float = 3.0
    min_event_gap: float = 6.0
    cross_modal_gap: float = 2.0
    sound_seconds: float = 1.0
    scene_seconds: float = 240.0
    objects: tuple = ("circle", "square", "triangle", "cross", "diamond", "ring")
    colours: tuple = ("red", "green", "blue", "yellow", "purple", "orange")
    slots: tuple = ("left", "centre", "right")
    symbols: tuple = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
    noise_level: float = 0.02
    n_questions: int = 24
    question_mix: dict = field(default_factory=lambda: {"audio": 0.3, "visual": 0.4, "cross": 0.3})
    max_count: int = 9
    introduce_over: float = 0.0

    def __post_init__(self) -> None:
        # JSON round trips give lists; tuples keep the config hashable-looking and immutable in spirit
        for name in ("objects", "colours", "slots", "symbols"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.width % PATCH_PIXELS or self.height % PATCH_PIXELS:
            raise ValueError(f"width and height must be multiples of {PATCH_PIXELS}, got {self.width}x{self.height}")
        cells = (self.width // PATCH_PIXELS) * (self.height // PATCH_PIXELS)
        if not VIDEO_CELLS[0] <= cells <= VIDEO_CELLS[1]:
            raise ValueError(f"a {self.width}x{self.height} frame has {cells} cells of 28x28 px; Qwen2.5-Omni resizes "
                             f"video frames to {VIDEO_CELLS[0]}..{VIDEO_CELLS[1]} cells, so choose a size within that")
        if self.seconds <= 0 or self.fps <= 0 or self.chunk_seconds <= 0:
            raise ValueError("seconds, fps and chunk_seconds must be positive")
        if set(self.question_mix) - set(QUESTION_FAMILIES) or sum(self.question_mix.values()) <= 0:
            raise ValueError(f"question_mix takes positive shares of {QUESTION_FAMILIES}, got {self.question_mix}")
        if not 0.0 <= self.introduce_over <= 1.0:
            raise ValueError(f"introduce_over is a share of the stream, 0 to 1, got {self.introduce_over}")
        if len(self.slots) > len(self.objects):
            raise ValueError("need at least as many objects as slots")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "AVRecallConfig":
        return cls(**json.loads(text))

    # --- token accounting -----------------------------------------------------------------------------

    @property
    def visual_tokens_per_second(self) -> float:
        per_group = (self.height // PATCH_PIXELS) * (self.width // PATCH_PIXELS)
        return per_group * self.fps / FRAMES_PER_VISUAL_GROUP

    @property
    def audio_tokens_per_second(self) -> float:
        return float(AUDIO_TOKENS_PER_SECOND)

    @property
    def media_tokens(self) -> float:
        """Visual and audio tokens of the whole stream."""
        return self.seconds * (self.visual_tokens_per_second + self.audio_tokens_per_second)

    @property
    def token_ratio(self) -> float:
        """Visual tokens per audio token, as Qwen2.5-Omni would encode this stream."""
        return self.visual_tokens_per_second / self.audio_tokens_per_second
