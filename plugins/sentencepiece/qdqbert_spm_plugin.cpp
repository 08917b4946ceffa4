// The qdqbert sentencepiece plugin: a thin C wrapper over Debian's libsentencepiece, loaded by
// qdqbert with dlmopen (see qdqbert_spm_plugin.h for why).
#include "qdqbert_spm_plugin.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

void set_err(char* err, size_t errlen, std::string_view msg) noexcept {
  if (!err || errlen == 0) return;
  const size_t n = std::min(errlen - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

// 1 with the status's message in err.
int failed(const sentencepiece::util::Status& status, char* err, size_t errlen) {
  set_err(err, errlen, status.ToString());
  return 1;
}

// Runs body (which returns 0 or 1); an exception escaping it becomes 1 with its message in err, since
// nothing may cross the C boundary.
template <class Body>
int guarded(char* err, size_t errlen, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    set_err(err, errlen, e.what());
  } catch (...) {
    set_err(err, errlen, "unknown exception in sentencepiece");
  }
  return 1;
}

sentencepiece::SentencePieceProcessor* sp(void* h) { return static_cast<sentencepiece::SentencePieceProcessor*>(h); }

}  // namespace

extern "C" {

int qdqbert_spm_abi(void) { return QDQBERT_SPM_PLUGIN_ABI; }

int qdqbert_spm_load(const char* model_path, void** handle, char* err, size_t errlen) {
  return guarded(err, errlen, [&] {
    auto p = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = p->Load(model_path);
    if (!status.ok()) return failed(status, err, errlen);
    *handle = p.release();
    return 0;
  });
}

void qdqbert_spm_free(void* handle) { delete sp(handle); }

int qdqbert_spm_encode(void* handle, const char* text, size_t len, qdqbert_spm_pieces* out, char* err, size_t errlen) {
  return guarded(err, errlen, [&] {
    const auto spt = sp(handle)->EncodeAsImmutableProto(absl::string_view(text, len));
    const size_t n = spt.pieces_size();
    out->n = n;
    out->ids = static_cast<int32_t*>(std::calloc(n + 1, sizeof(int32_t)));
    out->begins = static_cast<uint32_t*>(std::calloc(n + 1, sizeof(uint32_t)));
    out->ends = static_cast<uint32_t*>(std::calloc(n + 1, sizeof(uint32_t)));
    out->pieces = static_cast<char**>(std::calloc(n + 1, sizeof(char*)));
    if (!out->ids || !out->begins || !out->ends || !out->pieces) {
      qdqbert_spm_free_pieces(out);
      set_err(err, errlen, "out of memory");
      return 1;
    }
    for (size_t i = 0; i < n; ++i) {
      const auto piece = spt.pieces(static_cast<int>(i));
      out->ids[i] = static_cast<int32_t>(piece.id());
      out->begins[i] = piece.begin();
      out->ends[i] = piece.end();
      out->pieces[i] = strdup(piece.piece().c_str());
      if (!out->pieces[i]) {
        qdqbert_spm_free_pieces(out);
        set_err(err, errlen, "out of memory");
        return 1;
      }
    }
    return 0;
  });
}

void qdqbert_spm_free_pieces(qdqbert_spm_pieces* p) {
  if (!p) return;
  if (p->pieces) {
    for (size_t i = 0; i < p->n; ++i) std::free(p->pieces[i]);
  }
  std::free(p->pieces);
  std::free(p->ids);
  std::free(p->begins);
  std::free(p->ends);
  p->pieces = nullptr;
  p->ids = nullptr;
  p->begins = p->ends = nullptr;
  p->n = 0;
}

int qdqbert_spm_piece_size(void* handle) { return sp(handle)->GetPieceSize(); }

size_t qdqbert_spm_id_to_piece(void* handle, int id, char* buf, size_t bufsize) {
  if (id < 0 || id >= sp(handle)->GetPieceSize()) return 0;
  const std::string& s = sp(handle)->IdToPiece(id);
  if (buf && bufsize > 0) {
    const size_t n = std::min(bufsize - 1, s.size());
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
  }
  return s.size();
}

int qdqbert_spm_piece_to_id(void* handle, const char* piece) { return sp(handle)->PieceToId(piece); }

void qdqbert_spm_special_ids(void* handle, int* unk, int* bos, int* eos, int* pad) {
  *unk = sp(handle)->unk_id();
  *bos = sp(handle)->bos_id();
  *eos = sp(handle)->eos_id();
  *pad = sp(handle)->pad_id();
}

int qdqbert_spm_is_control(void* handle, int id) { return sp(handle)->IsControl(id) ? 1 : 0; }

int qdqbert_spm_decode(void* handle, const int32_t* ids, size_t n, char** out, char* err, size_t errlen) {
  return guarded(err, errlen, [&] {
    std::vector<int> v(ids, ids + n);
    std::string text;
    const auto status = sp(handle)->Decode(v, &text);
    if (!status.ok()) return failed(status, err, errlen);
    *out = strdup(text.c_str());
    if (*out) return 0;
    set_err(err, errlen, "out of memory");
    return 1;
  });
}

void qdqbert_spm_free_string(char* s) { std::free(s); }

int qdqbert_spm_train(const char* args, char* err, size_t errlen) {
  return guarded(err, errlen, [&] {
    const auto status = sentencepiece::SentencePieceTrainer::Train(args);
    return status.ok() ? 0 : failed(status, err, errlen);
  });
}

}  // extern "C"
