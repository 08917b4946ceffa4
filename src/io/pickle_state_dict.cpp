// The pickle of a torch.save state dict (data.pkl), read by a minimal pickle VM that understands what a
// state dict pickles to (OrderedDict, torch._utils._rebuild_tensor_v2, persistent storage ids) and
// nothing else: no code runs, no class is instantiated. Torch-free, so a fuzzer reaches it alone.
//
// Untrusted input: every tensor's size, stride and offset is checked against its storage record with
// overflow-checked arithmetic, a view may not have more elements than its storage (a stride-0 view of a
// tiny storage would otherwise be cloned into gigabytes), the number of objects is capped, and the
// objects are released without recursion however deeply they nest.
#include "qdqbert/io/pickle_state_dict.h"

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <variant>

#include "qdqbert/error.h"
#include "qdqbert/io/file.h"

namespace qdqbert::io {
namespace {

std::string hex(int v) {
  static const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[(v >> 4) & 15] + digits[v & 15];
}

std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

struct Value;
using ValuePtr = std::shared_ptr<Value>;
struct Global {
  std::string module, name;
};
struct Storage {
  std::string key;
  std::string type;  // "FloatStorage", ...
  int64_t element_size;
};
struct Mark {};
using List = std::vector<ValuePtr>;
using Dict = std::vector<std::pair<ValuePtr, ValuePtr>>;
struct Value {
  std::variant<std::monostate, bool, int64_t, double, std::string, List, Dict, Global, Storage, PickledTensor, Mark> v;
  bool is_tuple = false;
};


class Unpickler {
 public:
  // `storage_bytes`: the size of each storage record ("data/<key>" → bytes), from the zip directory.
  Unpickler(const uint8_t* data, size_t size, std::string path, const std::map<std::string, uint64_t>& storage_bytes)
      : p_(data), end_(data + size), path_(std::move(path)), storage_bytes_(storage_bytes) {}
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  // Releases every object without recursion: each one's children are dropped while `all_` still holds
  // them, so no destructor ever reaches into a nested container (a pickle can nest 100k levels deep,
  // or make a list contain itself).
  ~Unpickler() {
    for (auto& v : all_) v->v = std::monostate{};
  }

  ValuePtr run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                                   // PROTO
        case 0x95: bytes(8); break;                                 // FRAME
        case '.': QDQBERT_CHECK(!stack_.empty(), err("empty stack at STOP")); return stack_.back();
        case '(': stack_.push_back(make(Mark{})); break;            // MARK
        case ')': push_tuple({}); break;                            // EMPTY_TUPLE
        case 0x85: push_tuple(pop_n(1)); break;                     // TUPLE1
        case 0x86: push_tuple(pop_n(2)); break;                     // TUPLE2
        case 0x87: push_tuple(pop_n(3)); break;                     // TUPLE3
        case 't': push_tuple(pop_mark()); break;                    // TUPLE
        case '}': stack_.push_back(make(Dict{})); break;            // EMPTY_DICT
        case ']': stack_.push_back(make(List{})); break;            // EMPTY_LIST
        case 'N': stack_.push_back(make(std::monostate{})); break;  // NONE
        case 0x88: stack_.push_back(make(true)); break;             // NEWTRUE
        case 0x89: stack_.push_back(make(false)); break;            // NEWFALSE
        case 'J': stack_.push_back(make(static_cast<int64_t>(static_cast<int32_t>(le(4))))); break;  // BININT
        case 'K': stack_.push_back(make(static_cast<int64_t>(byte()))); break;                      // BININT1
        case 'M': stack_.push_back(make(static_cast<int64_t>(le(2)))); break;                       // BININT2
        case 0x8a: {                                                                                // LONG1
          const size_t n = byte();
          QDQBERT_CHECK(n <= 8, err("LONG1 wider than 8 bytes"));
          uint64_t v = n ? le(n) : 0;
          if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
          stack_.push_back(make(static_cast<int64_t>(v)));
          break;
        }
        case 'G': {  // BINFLOAT (big endian)
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | byte();
          double d;
          std::memcpy(&d, &bits, 8);
          stack_.push_back(make(d));
          break;
        }
        case 'X': stack_.push_back(make(str(le(4)))); break;     // BINUNICODE
        case 0x8c: stack_.push_back(make(str(byte()))); break;   // SHORT_BINUNICODE
        case 'U': stack_.push_back(make(str(byte()))); break;    // SHORT_BINSTRING
        case 'T': stack_.push_back(make(str(le(4)))); break;     // BINSTRING
        case 'q': memo_[byte()] = top(); break;                  // BINPUT
        case 'r': memo_[le(4)] = top(); break;                   // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;           // MEMOIZE
        case 'h': stack_.push_back(memo(byte())); break;         // BINGET
        case 'j': stack_.push_back(memo(le(4))); break;          // LONG_BINGET
        case 'c': {                                              // GLOBAL
          std::string mod = line(), name = line();
          stack_.push_back(make(Global{mod, name}));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          auto n = pop_n(2);
          stack_.push_back(make(Global{as_str(n[0]), as_str(n[1])}));
          break;
        }
        case 'Q': {  // BINPERSID
          auto pid = pop_n(1)[0];
          stack_.push_back(persistent(pid));
          break;
        }
        case 'R': {  // REDUCE
          auto args = pop_n(1)[0];
          auto fn = pop_n(1)[0];
          stack_.push_back(reduce(fn, args));
          break;
        }
        case 'b': pop_n(1); break;  // BUILD: state of an OrderedDict (_metadata) or tensor — not needed
        case 's': {                 // SETITEM
          auto kv = pop_n(2);
          dict_of(top()).emplace_back(kv[0], kv[1]);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_mark();
          QDQBERT_CHECK(items.size() % 2 == 0, err("odd SETITEMS"));
          auto& d = dict_of(top());
          for (size_t i = 0; i < items.size(); i += 2) d.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'a': {  // APPEND
          auto v = pop_n(1)[0];
          list_of(top()).push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark();
          auto& l = list_of(top());
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        default:
          QDQBERT_CHECK(false, err("unsupported pickle opcode " + hex(op)));
      }
    }
  }

 private:
  std::string err(const std::string& what) const { return "pytorch_model.bin '" + path_ + "': " + what; }
  ValuePtr make(decltype(Value::v) v) {
    QDQBERT_CHECK(all_.size() < kMaxPickleObjects, err("the pickle creates more than " +
                                                     std::to_string(kMaxPickleObjects) +
                                                     " objects (a state dict needs about 15 per tensor)"));
    auto p = std::make_shared<Value>();
    p->v = std::move(v);
    all_.push_back(p);
    return p;
  }
  uint8_t byte() {
    QDQBERT_CHECK(p_ < end_, err("truncated pickle"));
    return *p_++;
  }
  const uint8_t* bytes(size_t n) {
    QDQBERT_CHECK(static_cast<size_t>(end_ - p_) >= n, err("truncated pickle"));
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  uint64_t le(size_t n) {
    const uint8_t* b = bytes(n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return v;
  }
  std::string str(size_t n) {
    const uint8_t* b = bytes(n);
    return std::string(reinterpret_cast<const char*>(b), n);
  }
  std::string line() {
    std::string s;
    for (char c; (c = static_cast<char>(byte())) != '\n';) s += c;
    return s;
  }
  ValuePtr top() {
    QDQBERT_CHECK(!stack_.empty(), err("stack underflow"));
    return stack_.back();
  }
  ValuePtr memo(uint64_t k) {
    auto it = memo_.find(k);
    QDQBERT_CHECK(it != memo_.end(), err("bad memo reference"));
    return it->second;
  }
  List pop_n(size_t n) {
    QDQBERT_CHECK(stack_.size() >= n, err("stack underflow"));
    List r(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return r;
  }
  List pop_mark() {
    size_t i = stack_.size();
    while (i > 0 && !std::holds_alternative<Mark>(stack_[i - 1]->v)) --i;
    QDQBERT_CHECK(i > 0, err("MARK not found"));
    List r(stack_.begin() + static_cast<std::ptrdiff_t>(i), stack_.end());
    stack_.resize(i - 1);
    return r;
  }
  void push_tuple(List items) {
    auto v = make(std::move(items));
    v->is_tuple = true;
    stack_.push_back(v);
  }
  Dict& dict_of(const ValuePtr& v) {
    auto* d = std::get_if<Dict>(&v->v);
    QDQBERT_CHECK(d, err("SETITEM on a non-dict"));
    return *d;
  }
  List& list_of(const ValuePtr& v) {
    auto* l = std::get_if<List>(&v->v);
    QDQBERT_CHECK(l, err("APPEND on a non-list"));
    return *l;
  }
  const std::string& as_str(const ValuePtr& v) {
    auto* s = std::get_if<std::string>(&v->v);
    QDQBERT_CHECK(s, err("expected a string"));
    return *s;
  }
  int64_t as_int(const ValuePtr& v) {
    auto* i = std::get_if<int64_t>(&v->v);
    QDQBERT_CHECK(i, err("expected an int"));
    return *i;
  }
  const List& as_list(const ValuePtr& v) {
    auto* l = std::get_if<List>(&v->v);
    QDQBERT_CHECK(l, err("expected a tuple"));
    return *l;
  }
  ValuePtr persistent(const ValuePtr& pid) {
    const List& t = as_list(pid);
    QDQBERT_CHECK(t.size() >= 5 && as_str(t[0]) == "storage", err("unsupported persistent id"));
    auto* g = std::get_if<Global>(&t[1]->v);
    QDQBERT_CHECK(g, err("storage type is not a class"));
    const int64_t size = pickled_storage_element_size(g->name);
    QDQBERT_CHECK(size > 0, err("unsupported storage type '" + g->name + "'"));
    return make(Storage{as_str(t[2]), g->name, size});
  }
  ValuePtr reduce(const ValuePtr& fn, const ValuePtr& args) {
    auto* g = std::get_if<Global>(&fn->v);
    QDQBERT_CHECK(g, err("REDUCE of a non-class"));
    const std::string full = g->module + "." + g->name;
    if (full == "collections.OrderedDict" || full == "builtins.dict") return make(Dict{});
    if (full == "torch._utils._rebuild_tensor_v2" || full == "torch._utils._rebuild_tensor") {
      const List& a = as_list(args);
      QDQBERT_CHECK(a.size() >= 4, err("_rebuild_tensor_v2 with too few arguments"));
      auto* st = std::get_if<Storage>(&a[0]->v);
      QDQBERT_CHECK(st, err("tensor without storage"));
      const int64_t offset = as_int(a[1]);
      std::vector<int64_t> size, stride;
      for (const auto& s : as_list(a[2])) size.push_back(as_int(s));
      for (const auto& s : as_list(a[3])) stride.push_back(as_int(s));
      check_view(*st, offset, size, stride);
      return make(PickledTensor{st->key, st->type, offset, std::move(size), std::move(stride)});
    }
    if (full == "torch._utils._rebuild_parameter") {
      const List& a = as_list(args);
      QDQBERT_CHECK(!a.empty(), err("_rebuild_parameter without data"));
      return a[0];
    }
    QDQBERT_CHECK(false, err("unsupported pickled object " + full + " (only state dicts of tensors can be read)"));
  }
  // The view (offset, size, stride) must lie inside its storage and have no more elements than it, all
  // in overflow-checked arithmetic, before anything is allocated. LibTorch 1.13's own check wraps
  // around for an offset near 2^62 and then reads heap memory into the weights.
  void check_view(const Storage& s, int64_t offset, const std::vector<int64_t>& size,
                  const std::vector<int64_t>& stride) {
    const auto it = storage_bytes_.find(s.key);
    QDQBERT_CHECK(it != storage_bytes_.end(), err("missing storage record data/" + s.key));
    const uint64_t elem = static_cast<uint64_t>(s.element_size);
    QDQBERT_CHECK(it->second % elem == 0, err("storage " + s.key + " has a partial element"));
    const uint64_t storage_numel = it->second / elem;
    const std::string view = "tensor view (offset " + std::to_string(offset) + ", size " + list_str(size) +
                             ", stride " + list_str(stride) + ") of storage " + s.key + " (" +
                             std::to_string(storage_numel) + " elements)";
    QDQBERT_CHECK(size.size() == stride.size() && size.size() <= 64, err(view + ": bad rank"));
    QDQBERT_CHECK(offset >= 0, err(view + ": negative offset"));
    std::optional<uint64_t> numel = 1, last = static_cast<uint64_t>(offset);
    for (size_t d = 0; d < size.size(); ++d) {
      QDQBERT_CHECK(size[d] >= 0 && stride[d] >= 0, err(view + ": negative size or stride"));
      if (numel) numel = checked_mul(*numel, static_cast<uint64_t>(size[d]));
      if (size[d] > 0 && last) {
        const auto step = checked_mul(static_cast<uint64_t>(size[d] - 1), static_cast<uint64_t>(stride[d]));
        last = step ? checked_add(*last, *step) : std::nullopt;
      }
    }
    QDQBERT_CHECK(numel, err(view + ": the element count overflows 64 bits"));
    if (*numel == 0) return;
    QDQBERT_CHECK(last && *last < storage_numel, err(view + " reaches past the end of its storage"));
    QDQBERT_CHECK(*numel <= storage_numel, err(view + " has " + std::to_string(*numel) +
                                             " elements, more than its storage: overlapping views are refused "
                                             "(they would be copied into a tensor larger than the file)"));
  }
  const uint8_t* p_;
  const uint8_t* end_;
  std::string path_;
  std::vector<ValuePtr> stack_;
  std::map<uint64_t, ValuePtr> memo_;
  const std::map<std::string, uint64_t>& storage_bytes_;
  std::vector<ValuePtr> all_;  // every object made, so that ~Unpickler can release them flat
};

}  // namespace

int64_t pickled_storage_element_size(const std::string& storage_type) {
  static const std::map<std::string, int64_t> sizes = {
      {"FloatStorage", 4}, {"DoubleStorage", 8}, {"HalfStorage", 2}, {"BFloat16Storage", 2}, {"LongStorage", 8},
      {"IntStorage", 4},   {"ShortStorage", 2},  {"CharStorage", 1}, {"ByteStorage", 1},     {"BoolStorage", 1}};
  const auto it = sizes.find(storage_type);
  return it == sizes.end() ? 0 : it->second;
}

std::vector<std::pair<std::string, PickledTensor>> parse_state_dict_pickle(
    const uint8_t* data, size_t size, const std::map<std::string, uint64_t>& storage_bytes, const std::string& path) {
  Unpickler u(data, size, path, storage_bytes);
  const ValuePtr root = u.run();
  auto* d = std::get_if<Dict>(&root->v);
  QDQBERT_CHECK(d, "pytorch_model.bin '", path, "': the pickle is not a dict (not a state dict)");
  std::vector<std::pair<std::string, PickledTensor>> out;
  std::map<std::string, bool> seen;
  for (const auto& [k, v] : *d) {
    auto* name = std::get_if<std::string>(&k->v);
    auto* t = std::get_if<PickledTensor>(&v->v);
    QDQBERT_CHECK(name && t, "pytorch_model.bin '", path, "': state dict entry is not a (str, tensor) pair");
    QDQBERT_CHECK(seen.emplace(*name, true).second, "pytorch_model.bin '", path, "': tensor '", *name,
                  "' appears twice in the state dict");
    out.emplace_back(*name, *t);
  }
  return out;
}

}  // namespace qdqbert::io
