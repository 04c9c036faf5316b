"""What the language model reads for an AV-Recall stream: its media rows' embeddings and TMRoPE positions,
laid out as a stream feeds them, so that they can be fed again at other positions or trained on.

The training script trains on these layouts (`scripts/train_avrecall_model.py`, which checks them against
the runtime's logits), and `scripts/far_positions.py` feeds them with their chunks moved later in stream
time, to see how the model answers far past the positions it was trained at.

    with model.stream() as s:
        layout = StreamLayout(s).encode(AVRecallStream(config))
    later = shift_chunks(layout, np.full(n_chunks, 30_000))   # as if 20 minutes had come before
"""

from __future__ import annotations

import numpy as np

from ..media import VIDEO_PIXELS, LogMelStream, image_patches

# TMRoPE: the temporal position grows by 25 a second (audio tokens come at the same rate)
POSITIONS_PER_SECOND = 25


class StreamLayout:
    """The embeddings and TMRoPE positions a stream gives to the language model for an AV-Recall stream fed
    chunk by chunk and then asked a question: `<|vision_bos|><|audio_bos|>`, each 2-s chunk's video tokens
    then its audio tokens, `<|audio_eos|><|vision_eos|>`. It follows the stream's own rules (the audio of a
    chunk is encoded once the log-mel front end has all its frames, the last partial chunk at the close).
    The opening tokens sit at position 0 and the media from 1; both closing tokens at 1 + the largest
    position, where text then continues."""

    def __init__(self, stream, native_video: bool = True):
        self.stream, self.native_video = stream, native_video

    def encode(self, av) -> dict:
        """The layout's embeddings, positions, chunk of each row and which rows are video, and its video
        blocks as (first row, patches, grid): the vision tower's input, for training it. Without
        ``native_video`` the video rows are left zero (a tower being trained fills them)."""
        mel = LogMelStream()
        frames, embeddings, positions, chunk_of, videos, is_video = [], [], [], [], [], []
        start = 1                                   # after the two opening tokens at position 0
        grids_done = audio_done = chunk = 0

        def evaluate(final: bool) -> None:
            nonlocal grids_done, audio_done, chunk
            # the video grids (2 frames, one second each at 2 fps) that end within this chunk
            n_frames = min(len(frames), 2 * (2 * (chunk + 1) - grids_done))
            if n_frames > 0:
                patches, grid = image_patches(np.stack(frames[:n_frames]), **VIDEO_PIXELS)
                del frames[:n_frames]
                t, gh, gw = grid
                videos.append((len(positions), patches, grid))
                embeddings.append(self.stream.encode_image(patches, grid) if self.native_video else
                                  np.zeros((t * (gh // 2) * (gw // 2), self.stream.model.info.n_embd), np.float32))
                positions.extend((start + (grids_done + g) * POSITIONS_PER_SECOND, start + i, start + j)
                                 for g in range(t) for i in range(gh // 2) for j in range(gw // 2))
                grids_done += t
                is_video.extend([True] * (len(positions) - len(is_video)))
            n = min(200, mel.n_ready)
            if n > 0 and (final or n == 200):
                audio = self.stream.encode_audio(mel.take(n))
                embeddings.append(audio)
                positions.extend((start + audio_done + k,) * 3 for k in range(len(audio)))
                audio_done += len(audio)
                is_video.extend([False] * len(audio))
            chunk_of.extend([chunk] * (len(positions) - len(chunk_of)))
            chunk += 1

        for c in av:
            frames.extend(c.video)
            mel.push(c.audio)
            if mel.n_ready >= 200 and len(frames) >= 2 * (2 * (chunk + 1) - grids_done):
                evaluate(False)
        mel.finish()
        while frames or mel.n_ready > 0:
            evaluate(True)
        return {"embeddings": np.concatenate(embeddings), "positions": np.asarray(positions, np.int32),
                "chunk": np.asarray(chunk_of, np.int32), "is_video": np.asarray(is_video, bool), "videos": videos}


def first_second(layout: dict, first_row: int) -> int:
    """The stream second of a video block's first frame pair, from the temporal position of the block's
    first row (media positions start at 1)."""
    return int((layout["positions"][first_row, 0] - 1) // POSITIONS_PER_SECOND)


def shift_chunks(layout: dict, shifts: np.ndarray) -> np.ndarray:
    """The layout's positions (int64) with chunk c moved ``shifts[c]`` positions later in stream time, as a
    longer stream of which only these chunks are left would place them. A video row moves on the temporal
    axis only: its height and width positions stay at its block's start, as in a stream that ran on. An
    audio row moves on all three axes, which are equal for audio."""
    positions = layout["positions"].astype(np.int64)
    shift = np.asarray(shifts, np.int64)[layout["chunk"]]
    audio = ~layout["is_video"]
    positions[:, 0] += shift
    positions[audio, 1] += shift[audio]
    positions[audio, 2] += shift[audio]
    return positions
