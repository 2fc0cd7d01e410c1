// safetensors reader and writer. The header is parsed with a schema-driven SAX handler (no JSON DOM):
// it sees every key, so duplicate names are caught (a DOM silently keeps one), and it never nests deeper
// than the format does (object -> entry -> shape array), so hostile `[[[[...` headers cannot recurse.
// After parsing, every promise of the format is checked: sizes match numel * dtype size (with checked
// arithmetic), the ranges tile the data buffer exactly. A validated header guarantees that every
// tensor_view lies inside the mapping, which is what makes the zero-copy views safe.
#include "engine/io/safetensors.hpp"

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/regular_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lorafleet::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

using json = nlohmann::json;

struct dtype_entry {
    dtype type;
    std::string_view name;
    std::size_t size;
};
constexpr std::array<dtype_entry, 15> dtype_table{{
    {dtype::BOOL, "BOOL", 1},
    {dtype::U8, "U8", 1},
    {dtype::I8, "I8", 1},
    {dtype::F8_E5M2, "F8_E5M2", 1},
    {dtype::F8_E4M3, "F8_E4M3", 1},
    {dtype::I16, "I16", 2},
    {dtype::U16, "U16", 2},
    {dtype::F16, "F16", 2},
    {dtype::BF16, "BF16", 2},
    {dtype::I32, "I32", 4},
    {dtype::U32, "U32", 4},
    {dtype::F32, "F32", 4},
    {dtype::F64, "F64", 8},
    {dtype::I64, "I64", 8},
    {dtype::U64, "U64", 8},
}};

const dtype_entry& entry_of(dtype t) {
    for (const auto& e : dtype_table)
        if (e.type == t) return e;
    throw std::logic_error("dtype outside the enumeration");
}

// Tensors of higher rank than this are certainly hostile (PyTorch itself stops at 64 dimensions).
constexpr std::size_t max_rank = 64;
// Longest piece of untrusted text (a name, a parser message) quoted in an error message.
constexpr std::size_t max_quoted_bytes = 160;

// Untrusted text made fit for a one-line message: control bytes escaped, long text cut at a UTF-8
// character boundary.
std::string printable(std::string_view s, std::size_t max_bytes = max_quoted_bytes) {
    std::size_t n = s.size();
    const bool cut = n > max_bytes;
    if (cut) {
        n = max_bytes;
        while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0u) == 0x80u)
            --n;
    }
    std::string out;
    out.reserve(n + 8);
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += char(c);
        }
    }
    if (cut) out += "...";
    return out;
}

std::string tensor_label(std::string_view name) {
    return "tensor '" + printable(name) + "'";
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + "]";
}

std::string range_string(std::uint64_t begin, std::uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// numel * dtype size in bytes, or nullopt when a dimension is negative or the count overflows. A zero
// dimension makes the tensor empty whatever the other dimensions are, but the product of the non-zero
// dimensions must still fit int64 so that tensor_info::numel() never overflows in any order.
std::optional<std::uint64_t> checked_byte_count(const std::vector<std::int64_t>& shape, dtype t) {
    std::int64_t product = 1;
    bool empty = false;
    for (const std::int64_t d : shape) {
        if (d < 0) return std::nullopt;
        if (d == 0) {
            empty = true;
            continue;
        }
        if (__builtin_mul_overflow(product, d, &product)) return std::nullopt;
    }
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(product), dtype_size(t), &bytes))
        return std::nullopt;
    return empty ? 0 : bytes;
}

std::string too_short_message(std::size_t size) {
    return "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length field";
}

// The SAX handler: a state machine over the only shape the format allows,
//   { "<name>": {"dtype": str, "shape": [uint...], "data_offsets": [uint, uint]}, "__metadata__": {str: str}
//   }
// Any other structure stops the parse at once with a message saying what was expected.
class header_sax {
public:
    std::vector<tensor_info> tensors; // in JSON order
    std::map<std::string, std::string> metadata;
    std::string failure; // the first problem found; empty while all is well

    // ---- nlohmann SAX interface ----
    bool null() { return value({kind::null_value}); }
    bool boolean(bool b) { return value({b ? kind::true_value : kind::false_value}); }
    bool number_integer(json::number_integer_t v) {
        if (v >= 0) return value({kind::integer, static_cast<std::uint64_t>(v)});
        return value({kind::negative_integer, 0, std::to_string(v)});
    }
    bool number_unsigned(json::number_unsigned_t v) { return value({kind::integer, v}); }
    bool number_float(json::number_float_t, const json::string_t& text) {
        return value({kind::floating, 0, text});
    }
    bool string(json::string_t& s) { return value({kind::string, 0, s}); }
    bool binary(json::binary_t&) { return fail("header holds binary data"); } // never from text JSON
    bool start_object(std::size_t) { return value({kind::object}); }
    bool start_array(std::size_t) { return value({kind::array}); }
    bool key(json::string_t& k);
    bool end_object();
    bool end_array();
    bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
        // The parser's own message quotes the text around the error: name the byte instead.
        return fail("header is not valid UTF-8 JSON at byte " + std::to_string(position) + " of the header");
    }

private:
    enum class kind {
        null_value,
        true_value,
        false_value,
        integer,
        negative_integer,
        floating,
        string,
        array,
        object
    };
    struct event {
        kind k;
        std::uint64_t u = 0;        // the value of a non-negative integer
        std::string_view text = {}; // the text of a string, float or negative integer
    };
    enum class state {
        top,          // before the top-level value
        top_key,      // inside the top object, before a key or '}'
        top_value,    // after a top-level key
        entry_key,    // inside a tensor entry, before a key or '}'
        entry_value,  // after a key in a tensor entry
        shape,        // inside "shape": [...]
        offsets,      // inside "data_offsets": [...]
        metadata_key, // inside "__metadata__", before a key or '}'
        metadata_value,
        done,
    };
    enum class field { dtype, shape, offsets };

    bool value(const event& e);
    bool fail(std::string message) {
        if (failure.empty()) failure = std::move(message);
        return false;
    }
    static std::string describe(const event& e) {
        switch (e.k) {
        case kind::null_value:
            return "null";
        case kind::true_value:
            return "true";
        case kind::false_value:
            return "false";
        case kind::integer:
            return std::to_string(e.u);
        case kind::negative_integer:
            return "a negative number";
        case kind::floating:
            return "a non-integer number";
        case kind::string:
            return "a string"; // values read from the file are never quoted
        case kind::array:
            return "an array";
        case kind::object:
            return "an object";
        }
        return "a value";
    }
    std::string here() const { return tensor_label(m_current.name); }

    state m_state = state::top;
    std::set<std::string, std::less<>> m_top_keys; // every top-level key seen, to catch duplicates
    std::string m_key;                             // the current top-level or metadata key
    tensor_info m_current;                         // the tensor entry being read
    field m_field = field::dtype;
    bool m_seen[3] = {false, false, false}; // dtype, shape, data_offsets of m_current
    std::vector<std::uint64_t> m_offsets;
};

constexpr std::string_view metadata_key = "__metadata__";
constexpr std::string_view shape_rule = "shape must be an array of non-negative integers";
constexpr std::string_view offsets_rule = "data_offsets must be [begin, end], two non-negative integers";

bool header_sax::value(const event& e) {
    switch (m_state) {
    case state::top:
        if (e.k != kind::object) return fail("header is not a JSON object, got " + describe(e));
        m_state = state::top_key;
        return true;
    case state::top_value:
        if (m_key == metadata_key) {
            if (e.k != kind::object)
                return fail("__metadata__ must be an object of string values, got " + describe(e));
            m_state = state::metadata_key;
            return true;
        }
        if (e.k != kind::object)
            return fail(tensor_label(m_key) + ": entry must be an object {dtype, shape, data_offsets}, got " +
                        describe(e));
        m_current = tensor_info{};
        m_current.name = m_key;
        std::fill(std::begin(m_seen), std::end(m_seen), false);
        m_offsets.clear();
        m_state = state::entry_key;
        return true;
    case state::entry_value:
        switch (m_field) {
        case field::dtype: {
            if (e.k != kind::string) return fail(here() + ": dtype must be a string, got " + describe(e));
            const auto t = parse_dtype(e.text);
            if (!t) return fail(here() + ": dtype is not one the format defines");
            m_current.type = *t;
            m_state = state::entry_key;
            return true;
        }
        case field::shape:
            if (e.k != kind::array)
                return fail(here() + ": " + std::string(shape_rule) + ", got " + describe(e));
            m_state = state::shape;
            return true;
        case field::offsets:
            if (e.k != kind::array)
                return fail(here() + ": " + std::string(offsets_rule) + ", got " + describe(e));
            m_state = state::offsets;
            return true;
        }
        break;
    case state::shape:
        if (e.k != kind::integer)
            return fail(here() + ": " + std::string(shape_rule) + ", got " + describe(e) + " in it");
        if (e.u > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
            return fail(here() + ": shape dimension " + std::to_string(e.u) + " is absurdly large");
        if (m_current.shape.size() == max_rank)
            return fail(here() + ": shape has more than " + std::to_string(max_rank) + " dimensions");
        m_current.shape.push_back(static_cast<std::int64_t>(e.u));
        return true;
    case state::offsets:
        if (e.k != kind::integer)
            return fail(here() + ": " + std::string(offsets_rule) + ", got " + describe(e) + " in it");
        if (m_offsets.size() == 2)
            return fail(here() + ": " + std::string(offsets_rule) + ", got more values");
        m_offsets.push_back(e.u);
        return true;
    case state::metadata_value:
        if (e.k != kind::string)
            return fail("__metadata__ value of '" + printable(m_key) + "' must be a string, got " +
                        describe(e));
        metadata.emplace(m_key, std::string(e.text));
        m_state = state::metadata_key;
        return true;
    case state::top_key:
    case state::entry_key:
    case state::metadata_key:
    case state::done:
        break;
    }
    return fail("header has a JSON value where none belongs"); // a conforming parser never gets here
}

bool header_sax::key(json::string_t& k) {
    switch (m_state) {
    case state::top_key:
        if (k.empty()) return fail("empty tensor name");
        if (!m_top_keys.insert(k).second)
            return fail(k == metadata_key ? std::string("duplicate __metadata__")
                                          : "duplicate tensor name '" + printable(k) + "'");
        m_key = k;
        m_state = state::top_value;
        return true;
    case state::entry_key: {
        std::size_t i = 0;
        if (k == "dtype") {
            m_field = field::dtype;
            i = 0;
        } else if (k == "shape") {
            m_field = field::shape;
            i = 1;
        } else if (k == "data_offsets") {
            m_field = field::offsets;
            i = 2;
        } else {
            return fail(here() + ": unknown key '" + printable(k) +
                        "' (expected dtype, shape, data_offsets)");
        }
        if (m_seen[i]) return fail(here() + ": duplicate key '" + k + "'");
        m_seen[i] = true;
        m_state = state::entry_value;
        return true;
    }
    case state::metadata_key:
        if (metadata.count(k)) return fail("__metadata__ has a duplicate key '" + printable(k) + "'");
        m_key = k;
        m_state = state::metadata_value;
        return true;
    default:
        return fail("header has a JSON key where none belongs");
    }
}

bool header_sax::end_object() {
    switch (m_state) {
    case state::top_key:
        m_state = state::done;
        return true;
    case state::metadata_key:
        m_state = state::top_key;
        return true;
    case state::entry_key: {
        static constexpr const char* names[3] = {"dtype", "shape", "data_offsets"};
        for (std::size_t i = 0; i < 3; ++i)
            if (!m_seen[i]) return fail(here() + ": missing " + names[i]);
        m_current.begin = m_offsets[0];
        m_current.end = m_offsets[1];
        tensors.push_back(std::move(m_current));
        m_state = state::top_key;
        return true;
    }
    default:
        return fail("header has a '}' where none belongs");
    }
}

bool header_sax::end_array() {
    switch (m_state) {
    case state::shape:
        m_state = state::entry_key;
        return true;
    case state::offsets:
        if (m_offsets.size() != 2)
            return fail(here() + ": " + std::string(offsets_rule) + ", got " +
                        std::to_string(m_offsets.size()) + (m_offsets.size() == 1 ? " value" : " values"));
        m_state = state::entry_key;
        return true;
    default:
        return fail("header has a ']' where none belongs");
    }
}

std::uint64_t read_le64(const std::byte* p) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, 8); // little-endian host (static_assert above)
    return v;
}

template <typename T> T load(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof(T)); // the data buffer has no alignment guarantee
    return v;
}

// True when every element's exponent field is not all ones (IEEE Inf/NaN encoding).
template <typename T> bool all_exponents_finite(std::span<const std::byte> bytes, T exponent_mask) {
    for (std::size_t i = 0; i + sizeof(T) <= bytes.size(); i += sizeof(T))
        if ((load<T>(bytes.data() + i) & exponent_mask) == exponent_mask) return false;
    return true;
}

std::string json_string(const std::string& s, const char* what, const std::string& where) {
    try {
        return json(s).dump(); // escapes quotes and control characters; throws on invalid UTF-8
    } catch (const json::exception&) {
        throw validation_error(where, std::string(what) + " '" + printable(s) + "' is not valid UTF-8");
    }
}

} // namespace

// ---- dtypes ---------------------------------------------------------------------------------------

std::string_view dtype_name(dtype t) {
    return entry_of(t).name;
}

std::optional<dtype> parse_dtype(std::string_view name) {
    for (const auto& e : dtype_table)
        if (e.name == name) return e.type;
    return std::nullopt;
}

std::size_t dtype_size(dtype t) {
    return entry_of(t).size;
}

bool is_lora_float(dtype t) {
    return t == dtype::F32 || t == dtype::F16 || t == dtype::BF16;
}

std::int64_t tensor_info::numel() const {
    // Validated shapes have a non-zero-dimension product that fits int64, so no partial product overflows.
    std::int64_t n = 1;
    for (const std::int64_t d : shape) {
        if (d == 0) return 0;
        n *= d;
    }
    return n;
}

// ---- header parsing -------------------------------------------------------------------------------

safetensors_header parse_safetensors_header(std::span<const std::byte> file,
                                            const std::string& path_for_errors) {
    const auto bad = [&](const std::string& what) { return format_error(path_for_errors, what); };
    if (file.size() < 8) throw bad(too_short_message(file.size()));
    const std::uint64_t n = read_le64(file.data());
    if (n > max_header_bytes)
        // The field's value is not shown: for a file that is not safetensors at all it is just its first
        // 8 bytes.
        throw bad("the 8-byte header length field is larger than the limit of " +
                  std::to_string(max_header_bytes) + " bytes (not a safetensors file?)");
    if (n > file.size() - 8)
        throw bad("the 8-byte header length field is larger than the " + std::to_string(file.size() - 8) +
                  " bytes that follow it (truncated, or not a safetensors file)");
    const char* text = reinterpret_cast<const char*>(file.data() + 8);
    // The format requires the JSON to start with '{' (padding is allowed only at the end); checking it
    // first also turns away non-object headers such as `[[[[...` before any parsing.
    if (n == 0 || text[0] != '{') throw bad("header is not a JSON object (it must begin with '{')");

    header_sax sax;
    const bool ok = json::sax_parse(text, text + n, &sax, json::input_format_t::json, /*strict=*/true,
                                    /*ignore_comments=*/false);
    if (!ok || !sax.failure.empty())
        throw bad(sax.failure.empty() ? std::string("header is not valid JSON") : sax.failure);

    safetensors_header h;
    h.metadata = std::move(sax.metadata);
    h.data_start = 8 + n;
    const std::uint64_t buffer = file.size() - 8 - n;
    for (const tensor_info& t : sax.tensors) {
        const std::string label = tensor_label(t.name);
        const auto bytes = checked_byte_count(t.shape, t.type);
        if (!bytes)
            throw bad(label + ": shape " + shape_string(t.shape) + " of " + std::string(dtype_name(t.type)) +
                      " overflows 64-bit byte counts");
        if (t.begin > t.end)
            throw bad(label + ": data_offsets " + range_string(t.begin, t.end) + " have begin > end");
        if (t.end - t.begin != *bytes)
            throw bad(label + ": data_offsets " + range_string(t.begin, t.end) + " hold " +
                      std::to_string(t.end - t.begin) + " bytes but " + std::string(dtype_name(t.type)) +
                      " " + shape_string(t.shape) + " needs " + std::to_string(*bytes));
        if (t.end > buffer)
            throw bad(label + ": data_offsets " + range_string(t.begin, t.end) +
                      " reach past the end of the " + std::to_string(buffer) + "-byte data buffer");
    }
    h.tensors = std::move(sax.tensors);
    std::sort(h.tensors.begin(), h.tensors.end(), [](const tensor_info& a, const tensor_info& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.name < b.name;
    });
    // The ranges must tile [0, buffer): each starts where the previous one ended.
    std::uint64_t expected = 0;
    const tensor_info* previous = nullptr;
    for (const tensor_info& t : h.tensors) {
        if (t.begin < expected)
            throw bad(tensor_label(t.name) + ": data_offsets " + range_string(t.begin, t.end) + " overlap " +
                      tensor_label(previous->name) + " " + range_string(previous->begin, previous->end));
        if (t.begin > expected)
            throw bad("gap in the data buffer: bytes " + std::to_string(expected) + " to " +
                      std::to_string(t.begin) + " belong to no tensor (before " + tensor_label(t.name) + ")");
        expected = t.end;
        previous = &t;
    }
    if (expected != buffer)
        throw bad("data buffer has " + std::to_string(buffer - expected) + " bytes after " +
                  (previous ? "the last tensor" : std::string("the header (which lists no tensors)")) +
                  " that belong to no tensor");
    return h;
}

// ---- tensor views ---------------------------------------------------------------------------------

void tensor_view::to_f32(std::span<float> out) const {
    if (!is_lora_float(type()))
        throw unsupported_error(name(),
                                "dtype " + std::string(dtype_name(type())) +
                                    " cannot be read as float32: adapter weights must be F32, F16 or BF16");
    const auto n = static_cast<std::size_t>(numel());
    if (bytes.size() != n * dtype_size(type()))
        throw shape_mismatch(name(), std::to_string(bytes.size()) + " bytes do not hold " +
                                         std::string(dtype_name(type())) + " " + shape_string(shape()));
    if (out.size() != n)
        throw shape_mismatch(name(), "output holds " + std::to_string(out.size()) +
                                         " floats but the tensor has " + std::to_string(n) + " elements");
    const std::byte* p = bytes.data();
    switch (type()) {
    case dtype::F32:
        if (n) std::memcpy(out.data(), p, n * sizeof(float));
        break;
    case dtype::F16:
        for (std::size_t i = 0; i < n; ++i)
            out[i] = f16_to_f32(load<std::uint16_t>(p + 2 * i));
        break;
    case dtype::BF16:
        for (std::size_t i = 0; i < n; ++i)
            out[i] = bf16_to_f32(load<std::uint16_t>(p + 2 * i));
        break;
    default:
        break; // excluded above
    }
}

std::vector<float> tensor_view::to_f32() const {
    if (!is_lora_float(type())) to_f32(std::span<float>{}); // throws unsupported_error before allocating
    std::vector<float> out(static_cast<std::size_t>(numel()));
    to_f32(out);
    return out;
}

bool tensor_view::all_finite() const {
    switch (type()) {
    case dtype::F32:
        return all_exponents_finite<std::uint32_t>(bytes, 0x7f800000u);
    case dtype::F16:
        return all_exponents_finite<std::uint16_t>(bytes, 0x7c00u);
    case dtype::BF16:
        return all_exponents_finite<std::uint16_t>(bytes, 0x7f80u);
    case dtype::F64:
        return all_exponents_finite<std::uint64_t>(bytes, 0x7ff0000000000000ull);
    case dtype::F8_E5M2:
        return all_exponents_finite<std::uint8_t>(bytes, 0x7cu);
    case dtype::F8_E4M3:
        return all_exponents_finite<std::uint8_t>(bytes, 0x7fu); // E4M3FN: only NaN, S1111111
    default:
        return true; // integers and booleans are always finite
    }
}

// ---- mapped files ---------------------------------------------------------------------------------

std::shared_ptr<const safetensors_file> safetensors_file::open(const std::filesystem::path& path) {
    const std::string where = path_string(path);
    regular_file file = open_regular(path); // never blocks on a FIFO; refuses devices and folders
    const auto size = static_cast<std::size_t>(file.size());
    if (size < 8) // also keeps mmap away from empty files, where it fails with EINVAL
        throw format_error(where, too_short_message(size));
    const int fd = file.fd();
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_errno = errno;
    file = regular_file(); // closes: the mapping keeps the file alive
    if (map == MAP_FAILED) throw io_error(where, std::string("cannot map: ") + std::strerror(map_errno));

    std::shared_ptr<safetensors_file> f(new safetensors_file());
    f->m_path = path;
    f->m_map = map;
    f->m_size = size;
    const auto* base = static_cast<const std::byte*>(map);
    f->m_header = parse_safetensors_header({base, size}, where); // on throw, ~safetensors_file unmaps
    f->m_tensors.reserve(f->m_header.tensors.size());
    for (const tensor_info& t : f->m_header.tensors) {
        f->m_index.emplace(t.name, f->m_tensors.size());
        f->m_tensors.push_back({&t, {base + f->m_header.data_start + t.begin, t.end - t.begin}});
    }
    return f;
}

namespace {

void release_mapped_pages(const std::byte* data, std::size_t size) noexcept {
    if (size == 0) return;
    static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto first = reinterpret_cast<std::uintptr_t>(data) / page * page;
    const auto last = reinterpret_cast<std::uintptr_t>(data + size);
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

} // namespace

void safetensors_file::release_pages() const noexcept {
    release_mapped_pages(static_cast<const std::byte*>(m_map), m_size);
}

void safetensors_file::release_pages(const tensor_view& t) const noexcept {
    const auto base = reinterpret_cast<std::uintptr_t>(m_map);
    const auto at = reinterpret_cast<std::uintptr_t>(t.bytes.data());
    if (at < base || at - base > m_size || t.bytes.size() > m_size - (at - base)) return;
    release_mapped_pages(t.bytes.data(), t.bytes.size());
}

safetensors_file::~safetensors_file() {
    if (m_map) ::munmap(m_map, m_size);
}

const tensor_view* safetensors_file::find(std::string_view name) const {
    const auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &m_tensors[it->second];
}

const tensor_view& safetensors_file::at(std::string_view name) const {
    if (const tensor_view* v = find(name)) return *v;
    throw format_error(path_string(m_path), "no tensor named '" + printable(name) + "'");
}

// ---- writing --------------------------------------------------------------------------------------

std::vector<std::byte> encode_f32(std::span<const float> values, dtype type) {
    std::vector<std::byte> out(values.size() * (is_lora_float(type) ? dtype_size(type) : 0));
    switch (type) {
    case dtype::F32:
        if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
        break;
    case dtype::F16:
    case dtype::BF16:
        for (std::size_t i = 0; i < values.size(); ++i) {
            const std::uint16_t h = type == dtype::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
        break;
    default:
        throw unsupported_error("", "cannot encode float32 values as " + std::string(dtype_name(type)) +
                                        ": adapter weights must be F32, F16 or BF16");
    }
    return out;
}

void write_safetensors(const std::filesystem::path& path, std::vector<tensor_data> tensors,
                       const std::map<std::string, std::string>& metadata) {
    const std::string where = path_string(path);
    std::sort(tensors.begin(), tensors.end(),
              [](const tensor_data& a, const tensor_data& b) { return a.name < b.name; });

    // Header: {"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}, ...} in name order.
    std::string header = "{";
    if (!metadata.empty()) {
        header += "\"__metadata__\":{";
        bool first = true;
        for (const auto& [k, v] : metadata) {
            header += (first ? "" : ",") + json_string(k, "metadata key", where) + ":" +
                      json_string(v, "metadata value", where);
            first = false;
        }
        header += "}";
    }
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const tensor_data& t = tensors[i];
        if (t.name.empty()) throw validation_error(where, "empty tensor name");
        if (t.name == metadata_key) throw validation_error(where, "'__metadata__' cannot name a tensor");
        if (i > 0 && tensors[i - 1].name == t.name)
            throw validation_error(where, "duplicate tensor name '" + printable(t.name) + "'");
        const auto bytes = checked_byte_count(t.shape, t.type);
        if (!bytes || *bytes != t.bytes.size())
            throw shape_mismatch(where, tensor_label(t.name) + ": " + std::to_string(t.bytes.size()) +
                                            " bytes do not hold " + std::string(dtype_name(t.type)) + " " +
                                            shape_string(t.shape));
        header += (header.size() > 1 ? "," : "") + json_string(t.name, "tensor name", where) +
                  ":{\"dtype\":\"" + std::string(dtype_name(t.type)) + "\",\"shape\":[";
        for (std::size_t d = 0; d < t.shape.size(); ++d)
            header += (d ? "," : "") + std::to_string(t.shape[d]);
        header +=
            "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + *bytes) + "]}";
        offset += *bytes;
    }
    header += "}";
    // Pad with spaces so the data buffer starts 8-byte aligned in the file (8 + N is a multiple of 8).
    header.append((8 - header.size() % 8) % 8, ' ');

    const std::uint64_t n = header.size();
    std::byte length[8];
    std::memcpy(length, &n, 8); // little-endian host
    atomic_file_writer out(path);
    out.write(std::span<const std::byte>(length, 8));
    out.write(header);
    for (const tensor_data& t : tensors)
        out.write(t.bytes);
    out.commit();
}

} // namespace lorafleet::io
