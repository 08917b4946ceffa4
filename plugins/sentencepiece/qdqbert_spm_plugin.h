/* C interface of the qdqbert sentencepiece plugin (libqdqbert_spm.so).
 *
 * Debian's libsentencepiece carries its own protobuf-lite; loaded into a process next to LibTorch's
 * protobuf it crashes at start-up. qdqbert therefore loads this small plugin with
 * dlmopen(LM_ID_NEWLM, ...), which gives it (and its sentencepiece/protobuf) a link-map namespace of
 * its own. Only plain C types cross the boundary; memory allocated by the plugin is freed by the
 * plugin (each namespace has its own allocator state). Every function returns 0 on success and
 * otherwise writes a message into err (errlen bytes, NUL-terminated). */
#ifndef QDQBERT_SPM_PLUGIN_H
#define QDQBERT_SPM_PLUGIN_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QDQBERT_SPM_PLUGIN_ABI 1

typedef struct qdqbert_spm_pieces {
  size_t n;
  int32_t* ids;
  uint32_t* begins; /* byte offsets of each piece's surface in the input */
  uint32_t* ends;
  char** pieces; /* NUL-terminated piece strings */
} qdqbert_spm_pieces;

int qdqbert_spm_abi(void);
int qdqbert_spm_load(const char* model_path, void** handle, char* err, size_t errlen);
void qdqbert_spm_free(void* handle);
int qdqbert_spm_encode(void* handle, const char* text, size_t len, qdqbert_spm_pieces* out, char* err, size_t errlen);
void qdqbert_spm_free_pieces(qdqbert_spm_pieces* p);
int qdqbert_spm_piece_size(void* handle);
/* Copies the piece of `id` into buf (bufsize bytes); returns the length needed (without the NUL). */
size_t qdqbert_spm_id_to_piece(void* handle, int id, char* buf, size_t bufsize);
int qdqbert_spm_piece_to_id(void* handle, const char* piece);
/* unk, bos, eos, pad ids (-1 when the model has none). */
void qdqbert_spm_special_ids(void* handle, int* unk, int* bos, int* eos, int* pad);
int qdqbert_spm_is_control(void* handle, int id);
/* Decodes ids into text: *out is allocated by the plugin, free it with qdqbert_spm_free_string. */
int qdqbert_spm_decode(void* handle, const int32_t* ids, size_t n, char** out, char* err, size_t errlen);
void qdqbert_spm_free_string(char* s);
/* SentencePieceTrainer::Train(args), e.g. "--input=a.txt --model_prefix=m --vocab_size=100". */
int qdqbert_spm_train(const char* args, char* err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
