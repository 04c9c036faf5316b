// The audio front end: 16 kHz mono PCM → Whisper-style log-mel spectrogram, numerically the features
// transformers' WhisperFeatureExtractor gives the Qwen2.5-Omni processor (25 ms periodic-Hann frames every
// 10 ms, power spectrum, Slaney mel filters over 0–8 kHz, log10, dynamic range of 8 decades, (x + 4) / 4).
#pragma once

#include <cstdint>
#include <vector>

namespace om {

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

} // namespace om
