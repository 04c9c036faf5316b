// Saving a stream to a file and restoring it: its memory rows, positions, rollback points, policy state
// and the open audio-visual block with its pending media, so a box can resume a stream after a restart.
#include "stream/stream.h"

#include "model/projector.h"
#include "serialize.h"

#include <cstring>

namespace {

constexpr char k_magic[8] = {'O', 'M', 'S', 'T', 'R', 'E', 'A', 'M'};
constexpr uint32_t k_version = 4;   // 2: om_memory_params.n_score_queries; 3: no random state;
                                    // 4: om_memory_params.neighbours, the rows' patch cosines

// What a saved stream must match in the model it is restored on.
struct model_fingerprint {
    int32_t n_layer, n_embd, n_embd_kv, n_vocab;
    int64_t n_params;

    static model_fingerprint of(const om_model & m) {
        return {m.hparams.n_layer, m.hparams.n_embd, m.hparams.n_embd_kv(), m.hparams.n_vocab,
                int64_t(m.file->params_placed())};
    }
    bool operator==(const model_fingerprint & o) const { return std::memcmp(this, &o, sizeof(o)) == 0; }
};

void save_block(om::byte_writer & w, const om::media_block * b) {
    w.value(b != nullptr);
    if (b != nullptr) {
        w.value(b->mel.n_mel());
        b->save(w);
    }
}

std::unique_ptr<om::media_block> load_block(om::byte_reader & r, const om_model & model) {
    if (!r.value<bool>()) {
        return nullptr;
    }
    const int32_t n_mel = r.value<int32_t>();
    if (n_mel < 1 || n_mel > om::k_mel_max_mel) {
        r.corrupt();
    }
    auto b = std::make_unique<om::media_block>(n_mel);
    b->load(r);
    const om::projector * proj = model.projector.get();
    if ((b->has_audio && (proj == nullptr || !proj->audio || proj->audio->n_mel != n_mel)) ||
        (b->has_video && (proj == nullptr || !proj->vision))) {
        om::fail(OM_STATUS_MODEL_MISMATCH, "the saved stream has an open audio-visual block: load the model with "
                 "the projector file (mmproj=...) it was streaming with");
    }
    return b;
}

} // namespace

void om_stream::save(const std::string & path) const {
    om::byte_writer w(path);
    w.bytes(k_magic, sizeof(k_magic));
    w.value(k_version);
    w.value(model_fingerprint::of(model));
    om_stream_params p = params;
    p.memory.budget = nullptr;
    w.value(p);
    w.vector(memory->budget_table());
    w.value(n_tokens);
    w.value(next_pos);
    w.value(compacted_at);
    w.vector(boundaries);
    w.value(t_ingest);
    w.vector(logits);
    save_block(w, block.get());
    w.value(block_opened_at);
    save_block(w, reopen_block.get());
    w.value(reopen_at);
    w.value(reopen_opened_at);
    memory->save(w);
    w.commit();
}

std::unique_ptr<om_stream> om_stream::load(om_model & model, const std::string & path) {
    using namespace om;
    byte_reader r(path);
    char magic[sizeof(k_magic)];
    r.bytes(magic, sizeof(magic));
    if (std::memcmp(magic, k_magic, sizeof(magic)) != 0) {
        fail(OM_STATUS_BAD_FILE, "%s is not a stream file (om_stream_save / Stream.save writes them)", path.c_str());
    }
    const uint32_t version = r.value<uint32_t>();
    if (version != k_version) {
        fail(OM_STATUS_UNSUPPORTED, "%s is a stream file of version %u; this build reads version %u", path.c_str(),
             version, k_version);
    }
    const model_fingerprint saved = r.value<model_fingerprint>(), here = model_fingerprint::of(model);
    if (!(saved == here)) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s was saved from another model (%d layers, %d wide, %lld parameters); "
             "this one has %d layers, %d wide, %lld parameters", path.c_str(), saved.n_layer, saved.n_embd,
             (long long) saved.n_params, here.n_layer, here.n_embd, (long long) here.n_params);
    }
    om_stream_params p = r.value<om_stream_params>();
    const std::vector<int32_t> budget = r.vector<int32_t>(uint64_t(here.n_layer) * 2);
    if (!budget.empty() && budget.size() != size_t(here.n_layer) * 2) {
        r.corrupt();
    }
    p.memory.budget = budget.empty() ? nullptr : budget.data();
    auto s = std::make_unique<om_stream>(model, p);
    s->n_tokens = r.value<int32_t>();
    s->next_pos = r.value<int32_t>();
    s->compacted_at = r.value<int32_t>();
    s->boundaries = r.vector<std::pair<int32_t, int32_t>>(uint64_t(1) << 32);
    s->t_ingest = r.value<double>();
    s->logits = r.vector<float>(uint64_t(here.n_vocab));
    s->block = load_block(r, model);
    s->block_opened_at = r.value<int32_t>();
    s->reopen_block = load_block(r, model);
    s->reopen_at = r.value<int32_t>();
    s->reopen_opened_at = r.value<int32_t>();
    s->memory->load(r);
    r.finish();
    return s;
}
