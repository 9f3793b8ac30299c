#include "core/torchscript_storages.h"

#include <caffe2/serialize/inline_container.h>
#include <c10/util/Exception.h>

#include <map>
#include <memory>
#include <vector>

#include "core/files.h"
#include "core/torch_pickle.h"

namespace saelab {

namespace {

// A pickle value as far as a storage id needs one: a string, an int, a global's name, a tuple of
// such values, or anything else (opaque).
struct Value {
  enum Kind { kOpaque, kStr, kInt, kGlobal, kTuple } kind = kOpaque;
  std::string s;  // kStr, kGlobal ("module.name")
  int64_t i = 0;
  std::vector<Value> items;  // kTuple
};

// Walks a pickle's opcodes with a stack of Values. Returns at STOP, or early (without an error) at
// an opcode or shape it does not know; calls `storage` for every persistent id.
class StorageIdScanner {
 public:
  StorageIdScanner(const char* data, size_t size) : d_(data), n_(size) {}

  template <class F>
  void run(F&& storage) {
    while (at_ < n_) {
      const uint8_t op = static_cast<uint8_t>(d_[at_++]);
      switch (op) {
        case 0x80: if (!skip(1)) return; break;                    // PROTO
        case 0x95: if (!skip(8)) return; break;                    // FRAME
        case '.': return;                                          // STOP
        case '(': marks_.push_back(stack_.size()); break;          // MARK
        case '}': case ']': case ')': case 'N': case 0x88: case 0x89: case 0x8f:  // empty containers, None, bools
          stack_.push_back(opaque());
          break;
        case 'J': { uint64_t v; if (!le(4, &v)) return; push_int(static_cast<int32_t>(v)); break; }  // BININT
        case 'K': { uint64_t v; if (!le(1, &v)) return; push_int(static_cast<int64_t>(v)); break; }  // BININT1
        case 'M': { uint64_t v; if (!le(2, &v)) return; push_int(static_cast<int64_t>(v)); break; }  // BININT2
        case 0x8a: {                                               // LONG1
          uint64_t len, v = 0;
          if (!le(1, &len) || len > 8 || (len > 0 && !le(static_cast<int>(len), &v))) return;
          if (len > 0 && len < 8 && ((v >> (8 * len - 1)) & 1)) v |= ~uint64_t{0} << (8 * len);
          push_int(static_cast<int64_t>(v));
          break;
        }
        case 'G': if (!skip(8)) return; stack_.push_back(opaque()); break;  // BINFLOAT
        case 'X': case 'T': case 'B': if (!push_str(4)) return; break;  // BINUNICODE, BINSTRING, BINBYTES
        case 0x8c: case 'U': case 'C': if (!push_str(1)) return; break;  // short forms
        case 0x8d: case 0x8e: if (!push_str(8)) return; break;    // BINUNICODE8, BINBYTES8
        case 0x85: if (!tuple_of(1)) return; break;                // TUPLE1
        case 0x86: if (!tuple_of(2)) return; break;                // TUPLE2
        case 0x87: if (!tuple_of(3)) return; break;                // TUPLE3
        case 't': {                                                // TUPLE
          std::vector<Value> items;
          if (!pop_to_mark(&items)) return;
          Value t;
          t.kind = Value::kTuple;
          t.items = std::move(items);
          stack_.push_back(std::move(t));
          break;
        }
        case 'l': case 'd': case 0x91: {                           // LIST, DICT, FROZENSET
          std::vector<Value> items;
          if (!pop_to_mark(&items)) return;
          stack_.push_back(opaque());
          break;
        }
        case 'q': { uint64_t k; if (!le(1, &k) || stack_.empty()) return; memo_[k] = stack_.back(); break; }  // BINPUT
        case 'r': { uint64_t k; if (!le(4, &k) || stack_.empty()) return; memo_[k] = stack_.back(); break; }  // LONG_BINPUT
        case 0x94: if (stack_.empty()) return; memo_[memo_.size()] = stack_.back(); break;  // MEMOIZE
        case 'h': case 'j': {                                      // BINGET, LONG_BINGET
          uint64_t k;
          if (!le(op == 'h' ? 1 : 4, &k)) return;
          auto it = memo_.find(k);
          if (it == memo_.end()) return;
          stack_.push_back(it->second);
          break;
        }
        case 'c': {                                                // GLOBAL "module\nname\n"
          std::string module, name;
          if (!line(&module) || !line(&name)) return;
          Value g;
          g.kind = Value::kGlobal;
          g.s = module + "." + name;
          stack_.push_back(std::move(g));
          break;
        }
        case 0x93: {                                               // STACK_GLOBAL
          Value name, module;
          if (!pop(&name) || !pop(&module)) return;
          Value g;
          g.kind = Value::kGlobal;
          g.s = module.s + "." + name.s;
          stack_.push_back(std::move(g));
          break;
        }
        case 'R': case 0x81: {                                     // REDUCE, NEWOBJ: callable, args → object
          Value a, b;
          if (!pop(&a) || !pop(&b)) return;
          stack_.push_back(opaque());
          break;
        }
        case 'b': case 's': case 'a': {                            // BUILD, SETITEM (2), APPEND
          Value a, b;
          if (!pop(&a)) return;
          if (op == 's' && !pop(&b)) return;
          if (stack_.empty()) return;
          break;
        }
        case 'u': case 'e': case 0x90: {                           // SETITEMS, APPENDS, ADDITEMS
          std::vector<Value> items;
          if (!pop_to_mark(&items) || stack_.empty()) return;
          break;
        }
        case 'Q': {                                                // BINPERSID
          Value pid;
          if (!pop(&pid)) return;
          storage(pid);
          stack_.push_back(opaque());
          break;
        }
        default:
          return;  // not a construct TorchScript's pickler writes: leave the file to the loader
      }
    }
  }

 private:
  static Value opaque() { return Value{}; }
  bool skip(size_t k) {
    if (k > n_ - at_) return false;
    at_ += k;
    return true;
  }
  bool le(int k, uint64_t* v) {
    if (static_cast<size_t>(k) > n_ - at_) return false;
    *v = 0;
    for (int i = k - 1; i >= 0; --i) *v = (*v << 8) | static_cast<uint8_t>(d_[at_ + i]);
    at_ += k;
    return true;
  }
  bool line(std::string* out) {
    for (size_t e = at_; e < n_ && e - at_ < 256; ++e) {
      if (d_[e] == '\n') {
        out->assign(d_ + at_, e - at_);
        at_ = e + 1;
        return true;
      }
    }
    return false;
  }
  void push_int(int64_t v) {
    Value x;
    x.kind = Value::kInt;
    x.i = v;
    stack_.push_back(std::move(x));
  }
  bool push_str(int length_bytes) {
    uint64_t len;
    if (!le(length_bytes, &len) || len > n_ - at_) return false;
    Value x;
    x.kind = Value::kStr;
    x.s.assign(d_ + at_, len);
    at_ += len;
    stack_.push_back(std::move(x));
    return true;
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  bool pop(Value* out) {
    if (stack_.size() <= floor()) return false;
    *out = std::move(stack_.back());
    stack_.pop_back();
    return true;
  }
  bool pop_to_mark(std::vector<Value>* out) {
    if (marks_.empty()) return false;
    const size_t m = marks_.back();
    marks_.pop_back();
    out->assign(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return true;
  }
  bool tuple_of(size_t k) {
    if (stack_.size() < floor() + k) return false;
    Value t;
    t.kind = Value::kTuple;
    t.items.assign(std::make_move_iterator(stack_.end() - static_cast<std::ptrdiff_t>(k)),
                   std::make_move_iterator(stack_.end()));
    stack_.resize(stack_.size() - k);
    stack_.push_back(std::move(t));
    return true;
  }

  const char* d_;
  size_t n_;
  size_t at_ = 0;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Value> memo_;
};

}  // namespace

void verify_torch_archive(const std::string& path, const std::string& what) {
  const std::map<std::string, uint64_t> entries = verify_zip_archive(path, what);
  const std::string name = what + " '" + path + "'";
  // Records by their name inside the archive's one top folder, as the stream reader names them.
  std::map<std::string, uint64_t> records;
  for (const auto& [entry, size] : entries) {
    const size_t slash = entry.find('/');
    if (slash != std::string::npos) records[entry.substr(slash + 1)] = size;
  }
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive;
  try {
    archive = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    const std::string msg = e.msg();
    TORCH_CHECK(false, name, " is not a TorchScript archive: ", msg.substr(0, msg.find('\n')));
  }
  for (const char* pickle : {"data", "constants"}) {
    const std::string record = std::string(pickle) + ".pkl";
    if (!archive->hasRecord(record)) continue;
    auto [bytes, size] = archive->getRecord(record);
    StorageIdScanner scanner(static_cast<const char*>(bytes.get()), size);
    scanner.run([&](const Value& pid) {
      // ('storage', torch.<T>Storage, key, device, numel)
      if (pid.kind != Value::kTuple || pid.items.size() != 5 || pid.items[0].s != "storage") return;
      const Value& type = pid.items[1];
      const Value& key = pid.items[2];
      const Value& numel = pid.items[4];
      if (type.kind != Value::kGlobal || key.kind != Value::kStr || numel.kind != Value::kInt) return;
      torch::Dtype dtype;
      if (!torch_storage_dtype(type.s, &dtype)) return;
      const uint64_t element = c10::elementSize(dtype);
      const std::string storage = std::string(pickle) + "/" + key.s;
      auto found = records.find(storage);
      TORCH_CHECK(found != records.end(), name, " is damaged: storage '", storage, "', which ", record,
                  " names, is missing");
      const uint64_t held = found->second;
      TORCH_CHECK(numel.i >= 0 && static_cast<uint64_t>(numel.i) <= held / element &&
                      static_cast<uint64_t>(numel.i) * element == held,
                  name, " is damaged: storage '", storage, "' holds ", held, " bytes, but ", record, " declares ",
                  numel.i, " elements of ", element, " bytes");
    });
  }
}

}  // namespace saelab
