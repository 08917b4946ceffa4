// pytorch_model.bin reader: the zip archive written by torch.save (format since torch 1.6) read with
// LibTorch's PyTorchStreamReader and a minimal pickle VM that understands what a state dict pickles
// to (OrderedDict, torch._utils._rebuild_tensor_v2, persistent storage ids). LibTorch 1.13's
// pickle_load cannot read an OrderedDict, hence this.
#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <cstring>
#include <variant>

#include "qdqbert/io/checkpoint.h"

namespace qdqbert::io {
namespace {

struct Value;
using ValuePtr = std::shared_ptr<Value>;
struct Global {
  std::string module, name;
};
struct Storage {
  std::string key;
  at::ScalarType dtype;
};
struct Mark {};
using List = std::vector<ValuePtr>;
using Dict = std::vector<std::pair<ValuePtr, ValuePtr>>;
struct Value {
  std::variant<std::monostate, bool, int64_t, double, std::string, List, Dict, Global, Storage, at::Tensor, Mark> v;
  bool is_tuple = false;
};

ValuePtr make(decltype(Value::v) v) {
  auto p = std::make_shared<Value>();
  p->v = std::move(v);
  return p;
}

at::ScalarType storage_dtype(const std::string& name, const std::string& path) {
  static const std::map<std::string, at::ScalarType> m = {
      {"FloatStorage", at::kFloat}, {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort}, {"CharStorage", at::kChar}, {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool}};
  auto it = m.find(name);
  TORCH_CHECK(it != m.end(), "pytorch_model.bin '", path, "': unsupported storage type '", name, "'");
  return it->second;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, caffe2::serialize::PyTorchStreamReader& zip, std::string path)
      : p_(data), end_(data + size), zip_(zip), path_(std::move(path)) {}

  ValuePtr run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                                   // PROTO
        case 0x95: bytes(8); break;                                 // FRAME
        case '.': TORCH_CHECK(!stack_.empty(), err("empty stack at STOP")); return stack_.back();
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
          TORCH_CHECK(n <= 8, err("LONG1 wider than 8 bytes"));
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
          TORCH_CHECK(items.size() % 2 == 0, err("odd SETITEMS"));
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
          TORCH_CHECK(false, err("unsupported pickle opcode 0x" + c10::str(std::hex, static_cast<int>(op))));
      }
    }
  }

 private:
  std::string err(const std::string& what) const { return "pytorch_model.bin '" + path_ + "': " + what; }
  uint8_t byte() {
    TORCH_CHECK(p_ < end_, err("truncated pickle"));
    return *p_++;
  }
  const uint8_t* bytes(size_t n) {
    TORCH_CHECK(static_cast<size_t>(end_ - p_) >= n, err("truncated pickle"));
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
    TORCH_CHECK(!stack_.empty(), err("stack underflow"));
    return stack_.back();
  }
  ValuePtr memo(uint64_t k) {
    auto it = memo_.find(k);
    TORCH_CHECK(it != memo_.end(), err("bad memo reference"));
    return it->second;
  }
  List pop_n(size_t n) {
    TORCH_CHECK(stack_.size() >= n, err("stack underflow"));
    List r(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return r;
  }
  List pop_mark() {
    size_t i = stack_.size();
    while (i > 0 && !std::holds_alternative<Mark>(stack_[i - 1]->v)) --i;
    TORCH_CHECK(i > 0, err("MARK not found"));
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
    TORCH_CHECK(d, err("SETITEM on a non-dict"));
    return *d;
  }
  List& list_of(const ValuePtr& v) {
    auto* l = std::get_if<List>(&v->v);
    TORCH_CHECK(l, err("APPEND on a non-list"));
    return *l;
  }
  const std::string& as_str(const ValuePtr& v) {
    auto* s = std::get_if<std::string>(&v->v);
    TORCH_CHECK(s, err("expected a string"));
    return *s;
  }
  int64_t as_int(const ValuePtr& v) {
    auto* i = std::get_if<int64_t>(&v->v);
    TORCH_CHECK(i, err("expected an int"));
    return *i;
  }
  const List& as_list(const ValuePtr& v) {
    auto* l = std::get_if<List>(&v->v);
    TORCH_CHECK(l, err("expected a tuple"));
    return *l;
  }
  ValuePtr persistent(const ValuePtr& pid) {
    const List& t = as_list(pid);
    TORCH_CHECK(t.size() >= 5 && as_str(t[0]) == "storage", err("unsupported persistent id"));
    auto* g = std::get_if<Global>(&t[1]->v);
    TORCH_CHECK(g, err("storage type is not a class"));
    return make(Storage{as_str(t[2]), storage_dtype(g->name, path_)});
  }
  ValuePtr reduce(const ValuePtr& fn, const ValuePtr& args) {
    auto* g = std::get_if<Global>(&fn->v);
    TORCH_CHECK(g, err("REDUCE of a non-class"));
    const std::string full = g->module + "." + g->name;
    if (full == "collections.OrderedDict" || full == "builtins.dict") return make(Dict{});
    if (full == "torch._utils._rebuild_tensor_v2" || full == "torch._utils._rebuild_tensor") {
      const List& a = as_list(args);
      TORCH_CHECK(a.size() >= 4, err("_rebuild_tensor_v2 with too few arguments"));
      auto* st = std::get_if<Storage>(&a[0]->v);
      TORCH_CHECK(st, err("tensor without storage"));
      const int64_t offset = as_int(a[1]);
      std::vector<int64_t> size, stride;
      for (const auto& s : as_list(a[2])) size.push_back(as_int(s));
      for (const auto& s : as_list(a[3])) stride.push_back(as_int(s));
      at::Tensor storage = load_storage(*st);
      return make(storage.as_strided(size, stride, offset).clone());
    }
    if (full == "torch._utils._rebuild_parameter") {
      const List& a = as_list(args);
      TORCH_CHECK(!a.empty(), err("_rebuild_parameter without data"));
      return a[0];
    }
    TORCH_CHECK(false, err("unsupported pickled object " + full + " (only state dicts of tensors can be read)"));
  }
  at::Tensor load_storage(const Storage& s) {
    auto it = storages_.find(s.key);
    if (it != storages_.end()) return it->second;
    const std::string rec = "data/" + s.key;
    TORCH_CHECK(zip_.hasRecord(rec), err("missing storage record " + rec));
    auto [ptr, n] = zip_.getRecord(rec);
    const int64_t elem = c10::elementSize(s.dtype);
    TORCH_CHECK(static_cast<int64_t>(n) % elem == 0, err("storage " + s.key + " has a partial element"));
    at::Tensor t = torch::empty({static_cast<int64_t>(n) / elem}, torch::dtype(s.dtype));
    std::memcpy(t.data_ptr(), ptr.get(), n);
    storages_[s.key] = t;
    return t;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  caffe2::serialize::PyTorchStreamReader& zip_;
  std::string path_;
  std::vector<ValuePtr> stack_;
  std::map<uint64_t, ValuePtr> memo_;
  std::map<std::string, at::Tensor> storages_;
};

}  // namespace

std::map<std::string, at::Tensor> read_pytorch_bin(const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "pytorch_model.bin '", path, "' is not a torch.save zip archive (the legacy non-zip format ",
                "is not supported): ", e.what_without_backtrace());
  }
  TORCH_CHECK(zip->hasRecord("data.pkl"), "pytorch_model.bin '", path, "': no data.pkl record");
  auto [ptr, n] = zip->getRecord("data.pkl");
  Unpickler u(static_cast<const uint8_t*>(ptr.get()), n, *zip, path);
  ValuePtr root = u.run();
  auto* d = std::get_if<Dict>(&root->v);
  TORCH_CHECK(d, "pytorch_model.bin '", path, "': the pickle is not a dict (not a state dict)");
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, v] : *d) {
    auto* name = std::get_if<std::string>(&k->v);
    auto* t = std::get_if<at::Tensor>(&v->v);
    TORCH_CHECK(name && t, "pytorch_model.bin '", path, "': state dict entry is not a (str, tensor) pair");
    out[*name] = *t;
  }
  return out;
}

}  // namespace qdqbert::io
