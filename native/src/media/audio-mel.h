// The audio front end: 16 kHz mono PCM → Whisper-style log-mel spectrogram, of a whole clip or of one fed in
// pieces, numerically the features transformers' WhisperFeatureExtractor gives the Qwen2.5-Omni processor
// (25 ms periodic-Hann frames every 10 ms, power spectrum, Slaney mel filters over 0–8 kHz, log10, dynamic
// range of 8 decades, (x + 4) / 4).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

namespace om {

class byte_writer;
class byte_reader;

constexpr int32_t k_mel_sample_rate = 16000;
constexpr int32_t k_mel_n_fft       = 400;                  // 25 ms window
constexpr int32_t k_mel_hop         = 160;                  // 10 ms between frames
constexpr int32_t k_mel_n_bins      = k_mel_n_fft / 2 + 1;  // frequency bins of the one-sided spectrum
constexpr int32_t k_mel_max_mel     = 256;                  // beyond this the 0–8 kHz filters are empty

// Throws om::error unless 1 <= n_mel <= k_mel_max_mel.
void check_n_mel(int32_t n_mel);

// Frames of a clip of n_samples: one per started hop, the processor's feature_attention_mask length.
int64_t log_mel_n_frames(int64_t n_samples);

// The triangular Slaney-normalised mel filterbank over 0–8 kHz, [n_mel][k_mel_n_bins] row-major.
std::vector<double> mel_filterbank(int32_t n_mel);

// Log-mel features of a clip, written as [n_mel][log_mel_n_frames(n_samples)] (each mel bin's time series
// contiguous: the [n_frames, n_mel] ne layout ggml's conv1d takes). The clip is treated as followed by
// silence, as the processor's zero padding to its fixed length makes it; the 8-decade floor is taken
// from the loudest frame that sees any sample, as in the processor. Throws om::error on bad input.
void log_mel(const float * pcm, int64_t n_samples, int32_t n_mel, float * out);

class mel_kernel;  // the filters of one n_mel and the computation of a frame, shared with log_mel

// The same features for a clip that arrives in pieces of any size, each frame computed as soon as its
// window is complete, with bounded memory (the samples the next frames still need, plus the frames
// computed and not yet taken).
//
// Frame t is centred on sample 160·t and spans samples [160·t − 200, 160·t + 200), reflected about
// sample 0 at the start as offline; it is ready once the stream holds sample 160·t + 199 (and, for
// frame 0, the reflected sample 200). finish() ends the clip: the remaining frames of the
// log_mel_n_frames(n_samples()) the clip has become ready, seeing silence after its end, and the frames
// past them that still see its last samples are computed for the floor only, as offline.
//
// Every frame's log10 mel energies are bit-identical to log_mel's over the whole clip, however the clip is
// cut. Only the 8-decade floor can differ: take() applies (the loudest frame computed so far) − 8, while
// log_mel applies the loudest of the whole clip. Frames taken before a louder part was computed therefore
// differ from offline exactly in the bins that offline clamps to its higher floor (there they are lower);
// everything else is equal. Taking all frames after finish() gives log_mel's output exactly.
class log_mel_stream {
public:
    // Throws om::error unless 1 <= n_mel <= k_mel_max_mel.
    explicit log_mel_stream(int32_t n_mel);

    // Appends n samples and computes the frames they complete. Throws om::error (leaving the stream as it
    // was) on non-finite samples or after finish().
    void push(const float * pcm, int64_t n);
    // Ends the clip. Calling it again does nothing; an empty clip gives no frames.
    void finish();

    int64_t n_ready() const { return int64_t(ready_.size() - ready_head_) / n_mel_; }
    // Moves the oldest n ready frames to out as [n_mel][n], scaled as log_mel scales them with the floor
    // described above. Throws om::error unless 0 <= n <= n_ready().
    void take(int64_t n, float * out);

    int32_t n_mel() const { return n_mel_; }
    int64_t n_samples() const { return n_samples_; }
    int64_t n_taken() const { return n_taken_; }

    // The whole state, for saving a stream (load() expects a stream constructed with the same n_mel).
    void save(byte_writer & w) const;
    void load(byte_reader & r);

private:
    // Computes frames [n_computed_, t_end) and keeps those below n_kept as ready.
    void compute(int64_t t_end, int64_t n_kept);

    std::shared_ptr<const mel_kernel> kernel_;  // immutable, so copies of a stream share it
    int32_t n_mel_;
    std::vector<float> samples_;                // samples [first_, n_samples_) of the clip
    int64_t first_ = 0;
    int64_t n_samples_ = 0;
    int64_t n_computed_ = 0;                    // frames computed, taken or not
    bool finished_ = false;
    std::vector<float> ready_;                  // ready frames' unclamped log10 values, [frame][n_mel] from ready_head_
    size_t ready_head_ = 0;
    int64_t n_taken_ = 0;
    double max_log_ = -std::numeric_limits<double>::infinity();
};

} // namespace om
