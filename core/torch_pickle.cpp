#include "core/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include "core/files.h"

namespace saelab {

bool torch_storage_dtype(const std::string& name, torch::Dtype* dtype) {
  static const std::map<std::string, torch::Dtype> kTypes = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.DoubleStorage", torch::kFloat64},
      {"torch.HalfStorage", torch::kFloat16},  {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool},
      {"torch.ComplexFloatStorage", torch::kComplexFloat}, {"torch.ComplexDoubleStorage", torch::kComplexDouble}};
  auto it = kTypes.find(name);
  if (it == kTypes.end()) return false;
  *dtype = it->second;
  return true;
}

namespace {

// A Python value as far as a state dict needs one. Dicts and lists are shared (the pickle memo
// refers to the object being filled), hence shared_ptr.
struct Obj;
using ObjPtr = std::shared_ptr<Obj>;
struct Obj {
  enum Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kStorage, kTensor } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;               // kStr, kGlobal ("module.name")
  std::vector<ObjPtr> items;   // kTuple, kList; kDict: key, value, key, value, ...
  torch::Tensor tensor;        // kStorage: the flat typed storage; kTensor
  torch::Dtype dtype = torch::kFloat32;  // kGlobal of a storage type
};

ObjPtr make(Obj::Kind kind) {
  auto o = std::make_shared<Obj>();
  o->kind = kind;
  return o;
}

const char* kind_name(Obj::Kind k) {
  switch (k) {
    case Obj::kNone: return "None";
    case Obj::kBool: return "a bool";
    case Obj::kInt: return "an int";
    case Obj::kFloat: return "a float";
    case Obj::kStr: return "a string";
    case Obj::kTuple: return "a tuple";
    case Obj::kList: return "a list";
    case Obj::kDict: return "a dict";
    case Obj::kGlobal: return "a Python global";
    case Obj::kStorage: return "a storage";
    case Obj::kTensor: return "a tensor";
  }
  return "an object";
}

class Unpickler {
 public:
  Unpickler(const std::string& data, caffe2::serialize::PyTorchStreamReader& archive, std::string where)
      : d_(data), archive_(archive), where_(std::move(where)) {}

  ObjPtr run() {
    for (;;) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                     // PROTO
        case 0x95: bytes(8); break;                   // FRAME
        case '.': return pop();                       // STOP
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '}': push(make(Obj::kDict)); break;      // EMPTY_DICT
        case ']': push(make(Obj::kList)); break;      // EMPTY_LIST
        case ')': push(make(Obj::kTuple)); break;     // EMPTY_TUPLE
        case 'N': push(make(Obj::kNone)); break;
        case 0x88: push_bool(true); break;            // NEWTRUE
        case 0x89: push_bool(false); break;           // NEWFALSE
        case 'J': push_int(static_cast<int32_t>(le(4))); break;  // BININT
        case 'K': push_int(static_cast<int64_t>(le(1))); break;  // BININT1
        case 'M': push_int(static_cast<int64_t>(le(2))); break;  // BININT2
        case 0x8a: push_int(long1()); break;          // LONG1
        case 'G': push_float(); break;                // BINFLOAT
        case 'X': push_str(le(4)); break;             // BINUNICODE
        case 0x8c: push_str(le(1)); break;            // SHORT_BINUNICODE
        case 0x8d: push_str(le(8)); break;            // BINUNICODE8
        case 'T': push_str(le(4)); break;             // BINSTRING
        case 'U': push_str(le(1)); break;             // SHORT_BINSTRING
        case 'B': push_str(le(4)); break;             // BINBYTES
        case 'C': push_str(le(1)); break;             // SHORT_BINBYTES
        case 0x85: tuple_of(1); break;                // TUPLE1
        case 0x86: tuple_of(2); break;                // TUPLE2
        case 0x87: tuple_of(3); break;                // TUPLE3
        case 't': {                                   // TUPLE
          auto t = make(Obj::kTuple);
          t->items = pop_to_mark();
          push(t);
          break;
        }
        case 'q': memo_[le(1)] = top(); break;        // BINPUT
        case 'r': memo_[le(4)] = top(); break;        // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'h': push(memo(le(1))); break;           // BINGET
        case 'j': push(memo(le(4))); break;           // LONG_BINGET
        case 'c': {                                   // GLOBAL
          const std::string module = line();
          global(module + "." + line());
          break;
        }
        case 0x93: {                                  // STACK_GLOBAL
          const ObjPtr name = pop(), module = pop();
          expect(module->kind == Obj::kStr && name->kind == Obj::kStr, "STACK_GLOBAL needs two strings");
          global(module->s + "." + name->s);
          break;
        }
        case 'R': reduce(); break;                    // REDUCE
        case 'b': build(); break;                     // BUILD
        case 'Q': persistent(); break;                // BINPERSID
        case 's': {                                   // SETITEM
          const ObjPtr v = pop(), k = pop();
          dict_top()->items.insert(dict_top()->items.end(), {k, v});
          break;
        }
        case 'u': {                                   // SETITEMS
          std::vector<ObjPtr> kv = pop_to_mark();
          expect(kv.size() % 2 == 0, "SETITEMS with an odd number of items");
          ObjPtr dict = dict_top();
          dict->items.insert(dict->items.end(), kv.begin(), kv.end());
          break;
        }
        case 'a': {                                   // APPEND
          const ObjPtr v = pop();
          list_top()->items.push_back(v);
          break;
        }
        case 'e': {                                   // APPENDS
          std::vector<ObjPtr> v = pop_to_mark();
          ObjPtr list = list_top();
          list->items.insert(list->items.end(), v.begin(), v.end());
          break;
        }
        default:
          fail("uses pickle opcode 0x" + fmt::format("{:02x}", op) +
               ", which a dict of tensors does not need (only tensors, numbers and strings are read)");
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const { TORCH_CHECK(false, where_, ": ", why); }
  void expect(bool ok, const char* why) const {
    if (!ok) fail(std::string("is not a valid pickle (") + why + ")");
  }
  uint8_t byte() {
    expect(at_ < d_.size(), "it ends before its STOP opcode");
    return static_cast<uint8_t>(d_[at_++]);
  }
  std::string bytes(uint64_t n) {
    expect(n <= d_.size() - at_, "a length reaches past its end");
    std::string s = d_.substr(at_, n);
    at_ += n;
    return s;
  }
  uint64_t le(int n) {
    const std::string b = bytes(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[i]);
    return v;
  }
  int64_t long1() {
    const uint64_t n = le(1);
    expect(n <= 8, "an integer wider than 64 bits");
    if (n == 0) return 0;
    const uint64_t v = le(static_cast<int>(n));
    if (n < 8 && (v >> (8 * n - 1)) & 1) return static_cast<int64_t>(v | (~uint64_t{0} << (8 * n)));
    return static_cast<int64_t>(v);
  }
  std::string line() {
    const size_t end = d_.find('\n', at_);
    expect(end != std::string::npos && end - at_ < 256, "a GLOBAL name is not terminated");
    std::string s = d_.substr(at_, end - at_);
    at_ = end + 1;
    return s;
  }
  void push(ObjPtr o) { stack_.push_back(std::move(o)); }
  void push_bool(bool b) {
    auto o = make(Obj::kBool);
    o->i = b;
    push(o);
  }
  void push_int(int64_t v) {
    auto o = make(Obj::kInt);
    o->i = v;
    push(o);
  }
  void push_float() {
    const std::string b = bytes(8);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(b[i]);  // big-endian
    auto o = make(Obj::kFloat);
    std::memcpy(&o->f, &v, 8);
    push(o);
  }
  void push_str(uint64_t n) {
    auto o = make(Obj::kStr);
    o->s = bytes(n);
    push(o);
  }
  ObjPtr top() {
    expect(stack_.size() > floor(), "an opcode needs a value the stack does not hold");
    return stack_.back();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  ObjPtr pop() {
    ObjPtr o = top();
    stack_.pop_back();
    return o;
  }
  std::vector<ObjPtr> pop_to_mark() {
    expect(!marks_.empty(), "a MARK is missing");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ObjPtr> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return v;
  }
  void tuple_of(size_t n) {
    auto t = make(Obj::kTuple);
    t->items.resize(n);
    for (size_t i = n; i-- > 0;) t->items[i] = pop();
    push(t);
  }
  ObjPtr memo(uint64_t key) {
    auto it = memo_.find(key);
    expect(it != memo_.end(), "a memo reference to nothing");
    return it->second;
  }
  ObjPtr dict_top() {
    ObjPtr d = top();
    if (d->kind != Obj::kDict) fail(std::string("sets items on ") + kind_name(d->kind) + "; only dicts are read");
    return d;
  }
  ObjPtr list_top() {
    ObjPtr l = top();
    if (l->kind != Obj::kList) fail(std::string("appends to ") + kind_name(l->kind) + "; only lists are read");
    return l;
  }
  void global(const std::string& name) {
    static const std::set<std::string> kCallables = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                                     "torch._utils._rebuild_parameter",
                                                     "torch._utils._rebuild_parameter_with_state"};
    auto g = make(Obj::kGlobal);
    g->s = name;
    if (kCallables.count(name) == 0 && !torch_storage_dtype(name, &g->dtype)) {
      fail("holds a Python object of type '" + name + "'; only tensors, numbers and strings are read (a state dict " +
           "saved with torch.save(model.state_dict()) holds nothing else)");
    }
    push(g);
  }
  void reduce() {
    const ObjPtr args = pop(), fn = pop();
    expect(args->kind == Obj::kTuple && fn->kind == Obj::kGlobal, "REDUCE needs a global and a tuple");
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      expect(a.empty(), "OrderedDict built from arguments");
      push(make(Obj::kDict));
    } else if (fn->s == "torch._utils._rebuild_tensor_v2") {
      expect(a.size() >= 6 && a.size() <= 7, "_rebuild_tensor_v2 takes 6 or 7 arguments");
      push(rebuild_tensor(a[0], a[1], a[2], a[3]));
    } else {  // _rebuild_parameter(data, requires_grad, hooks[, state])
      expect(!a.empty() && a[0]->kind == Obj::kTensor, "a parameter without its tensor");
      push(a[0]);
    }
  }
  std::vector<int64_t> int_tuple(const ObjPtr& t, const char* what) {
    expect(t->kind == Obj::kTuple, what);
    std::vector<int64_t> v;
    for (const auto& x : t->items) {
      expect(x->kind == Obj::kInt, what);
      v.push_back(x->i);
    }
    return v;
  }
  ObjPtr rebuild_tensor(const ObjPtr& storage, const ObjPtr& offset, const ObjPtr& size, const ObjPtr& stride) {
    expect(storage->kind == Obj::kStorage && offset->kind == Obj::kInt, "a tensor without its storage");
    const std::vector<int64_t> sizes = int_tuple(size, "a tensor's size is not a tuple of ints");
    const std::vector<int64_t> strides = int_tuple(stride, "a tensor's stride is not a tuple of ints");
    expect(sizes.size() == strides.size(), "a tensor's size and stride differ in length");
    const int64_t numel = storage->tensor.numel();
    // The last element the view reaches must lie inside the storage (an empty view reaches none).
    int64_t reach = offset->i, elements = 1;
    bool empty = false;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] < 0 || strides[i] < 0) fail("holds a tensor with a negative size or stride");
      if (sizes[i] == 0) empty = true;
      if (sizes[i] > 0 && strides[i] > (int64_t{1} << 40) / sizes[i]) fail("holds a tensor whose strides are absurd");
      reach += (sizes[i] > 0 ? sizes[i] - 1 : 0) * strides[i];
      if (sizes[i] > 0 && elements > (int64_t{1} << 40) / sizes[i]) fail("holds a tensor whose size is absurd");
      elements *= sizes[i];
    }
    if (offset->i < 0 || (!empty && reach >= numel)) {
      fail("holds a tensor of shape " + c10::str(c10::IntArrayRef(sizes)) + " that reaches past its storage of " +
           std::to_string(numel) + " elements");
    }
    auto t = make(Obj::kTensor);
    t->tensor = empty ? torch::empty(sizes, storage->tensor.options())
                      : storage->tensor.as_strided(sizes, strides, offset->i).clone(at::MemoryFormat::Contiguous);
    return t;
  }
  void build() {
    const ObjPtr state = pop();
    const ObjPtr target = top();
    // An OrderedDict's state is its `_metadata` attribute; a tensor's is backward-compatibility data.
    if (target->kind != Obj::kDict && target->kind != Obj::kTensor) {
      fail(std::string("sets the state of ") + kind_name(target->kind) + "; only dicts and tensors are read");
    }
    (void)state;
  }
  void persistent() {
    // ('storage', torch.<T>Storage, key, location, numel)
    const ObjPtr pid = pop();
    expect(pid->kind == Obj::kTuple && pid->items.size() == 5, "a persistent id is not a storage");
    const auto& p = pid->items;
    expect(p[0]->kind == Obj::kStr && p[0]->s == "storage", "a persistent id is not a storage");
    expect(p[1]->kind == Obj::kGlobal && p[2]->kind == Obj::kStr && p[4]->kind == Obj::kInt, "a malformed storage id");
    torch::Dtype dtype;
    if (!torch_storage_dtype(p[1]->s, &dtype)) fail("a storage of type '" + p[1]->s + "'");
    auto it = storages_.find(p[2]->s);
    if (it == storages_.end()) {
      const std::string record = "data/" + p[2]->s;
      if (!archive_.hasRecord(record)) fail("storage '" + p[2]->s + "' is missing from the archive");
      auto [ptr, bytes] = archive_.getRecord(record);
      const int64_t numel = p[4]->i;
      const int64_t element = static_cast<int64_t>(c10::elementSize(dtype));
      if (numel < 0 || static_cast<uint64_t>(numel) * element != bytes) {
        fail("storage '" + p[2]->s + "' holds " + std::to_string(bytes) + " bytes, but its id says " +
             std::to_string(numel) + " elements of " + std::to_string(element) + " bytes");
      }
      torch::Tensor flat = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
      if (bytes > 0) std::memcpy(flat.data_ptr(), ptr.get(), bytes);
      it = storages_.emplace(p[2]->s, flat).first;
    }
    auto s = make(Obj::kStorage);
    s->tensor = it->second;
    push(s);
  }

  const std::string& d_;
  size_t at_ = 0;
  caffe2::serialize::PyTorchStreamReader& archive_;
  std::string where_;
  std::vector<ObjPtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, ObjPtr> memo_;
  std::map<std::string, torch::Tensor> storages_;
};

std::string describe(const Obj& o) {
  if (o.kind == Obj::kDict) return "a dict of " + std::to_string(o.items.size() / 2) + " entries";
  if (o.kind == Obj::kInt) return "the int " + std::to_string(o.i);
  return kind_name(o.kind);
}

}  // namespace

TorchPickle load_torch_pickle(const std::string& path, const std::string& what) {
  const std::string where = what + " '" + path + "'";
  require_file(path, what);
  TORCH_CHECK(starts_like_zip(path), where,
                " is not a zip archive: it is not a torch.save() file, or one in the legacy format of PyTorch "
                "before 1.6 (load it in Python and save it again with torch.save)");
  verify_zip_archive(path, what);
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive;
  try {
    archive = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, where, " is not a torch.save() archive: ", e.msg().substr(0, e.msg().find('\n')));
  }
  TORCH_CHECK(archive->hasRecord("data.pkl"), where, " is not a torch.save() archive (it has no data.pkl)");
  if (archive->hasRecord("byteorder")) {
    auto [ptr, n] = archive->getRecord("byteorder");
    const std::string order(static_cast<const char*>(ptr.get()), n);
    TORCH_CHECK(order == "little", where, " was saved on a big-endian machine (byteorder '", order, "')");
  }
  auto [ptr, n] = archive->getRecord("data.pkl");
  const std::string pickle(static_cast<const char*>(ptr.get()), n);
  const ObjPtr root = Unpickler(pickle, *archive, where).run();
  TORCH_CHECK(root->kind == Obj::kDict, where, " holds ", kind_name(root->kind), ", not a dict of tensors");
  TorchPickle out;
  for (size_t i = 0; i + 1 < root->items.size(); i += 2) {
    const Obj& k = *root->items[i];
    const Obj& v = *root->items[i + 1];
    TORCH_CHECK(k.kind == Obj::kStr, where, ": a key of its dict is ", kind_name(k.kind), ", not a string");
    if (v.kind == Obj::kTensor) out.tensors[k.s] = v.tensor;
    else out.others[k.s] = describe(v);
  }
  return out;
}

}  // namespace saelab
