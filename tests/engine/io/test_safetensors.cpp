// safetensors reader/writer and atomic writes. Malformed files are crafted byte by byte here (not with
// the writer), so the reader is checked against the format itself; each case names the error type and
// the text it must contain. The writer is checked by reading its raw bytes back, and atomicity by making
// a write fail halfway (RLIMIT_FSIZE) and looking at what is left on disk.
#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/safetensors.hpp"

#include "tests/support/test_paths.hpp"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QtTest/QtTest>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <typeinfo>

#include <csignal>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace lorafleet;
using namespace lorafleet::io;

namespace {

// A safetensors file by hand: little-endian u64 header length, header text, data bytes. `length`
// overrides the length field to make it lie.
QByteArray raw_file(const QByteArray& header, const QByteArray& data = {},
                    std::optional<quint64> length = {}) {
    const quint64 n = length.value_or(quint64(header.size()));
    QByteArray out;
    for (int i = 0; i < 8; ++i)
        out.append(char((n >> (8 * i)) & 0xff));
    return out + header + data;
}

// Header entry {"dtype": .., "shape": .., "data_offsets": ..} with the given JSON fragments.
QByteArray entry(const char* name, const char* dtype, const char* shape, const char* offsets) {
    return QByteArray("\"") + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape +
           ",\"data_offsets\":" + offsets + "}";
}

std::span<const std::byte> as_span(const QByteArray& b) {
    return {reinterpret_cast<const std::byte*>(b.constData()), std::size_t(b.size())};
}

template <typename T> std::span<const std::byte> bytes_of(const std::vector<T>& v) {
    return std::as_bytes(std::span<const T>(v));
}

QByteArray read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return QByteArray::fromStdString(std::string(std::istreambuf_iterator<char>(in), {}));
}

void write_raw(const fs::path& p, const QByteArray& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.constData(), bytes.size());
}

quint64 le64(const QByteArray& b) {
    quint64 n = 0;
    for (int i = 7; i >= 0; --i)
        n = (n << 8) | quint8(b[i]);
    return n;
}

std::vector<std::string> temp_leftovers(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().find(".tmp-") != std::string::npos) out.push_back(e.path().string());
    return out;
}

// Runs `f`, which must throw exactly E (not another lorafleet::error) with `needle` in its message.
template <typename E, typename F> QString expect_throw(F&& f, const QString& needle) {
    try {
        f();
    } catch (const E& e) {
        if (typeid(e) != typeid(E)) return QString("threw a subclass: ") + e.what();
        if (!QString::fromUtf8(e.what()).contains(needle))
            return QString("message '%1' lacks '%2'").arg(e.what(), needle);
        return {};
    } catch (const std::exception& e) {
        return QString("wrong exception type: ") + typeid(e).name() + ": " + e.what();
    }
    return "nothing was thrown";
}

#define EXPECT_THROW(E, expr, needle)                                                                        \
    do {                                                                                                     \
        const QString failure_ = expect_throw<E>([&] { (void)(expr); }, needle);                             \
        QVERIFY2(failure_.isEmpty(), qPrintable(failure_));                                                  \
    } while (0)

// A simple valid file body: "a" F32 [2] at [0, 8], "b" U8 [4] at [8, 12].
const QByteArray valid_header =
    "{" + entry("a", "\"F32\"", "[2]", "[0,8]") + "," + entry("b", "\"U8\"", "[4]", "[8,12]") + "}";
const QByteArray valid_data("\x00\x00\x80\x3f\x00\x00\x00\x40\x01\x02\x03\x04", 12); // 1.0f, 2.0f, 1..4

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    fs::path dir() const { return fs::path(m_tmp.path().toStdString()); }

private slots:
    void initTestCase() { QVERIFY(m_tmp.isValid()); }

    // ---- dtypes ---------------------------------------------------------------------------------------
    void dtypeNamesAndSizes() {
        const std::pair<const char*, std::size_t> expected[] = {
            {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
            {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
            {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
        for (const auto& [name, size] : expected) {
            const auto t = parse_dtype(name);
            QVERIFY2(t.has_value(), name);
            QCOMPARE(dtype_name(*t), std::string_view(name));
            QCOMPARE(dtype_size(*t), size);
            QCOMPARE(is_lora_float(*t), std::string_view(name) == "F32" || std::string_view(name) == "F16" ||
                                            std::string_view(name) == "BF16");
        }
        QVERIFY(!parse_dtype("f32").has_value());
        QVERIFY(!parse_dtype("F128").has_value());
        QVERIFY(!parse_dtype("").has_value());
    }

    // ---- parsing hand-made files ---------------------------------------------------------------------
    void parsesHandMadeFile() {
        // Pad the header so the data buffer starts at a file offset of 1 mod 4 (unaligned for float):
        // to_f32 must not care.
        const QByteArray header = valid_header + QByteArray(4 + (9 - (8 + valid_header.size()) % 4) % 4, ' ');
        const QByteArray file = raw_file(header, valid_data);
        const auto h = parse_safetensors_header(as_span(file), "hand.safetensors");
        QCOMPARE(h.data_start, std::uint64_t(8 + header.size()));
        QCOMPARE(h.data_start % 4, std::uint64_t(1));
        QCOMPARE(h.tensors.size(), std::size_t(2));
        QCOMPARE(h.tensors[0].name, std::string("a"));
        QCOMPARE(h.tensors[0].type, dtype::F32);
        QCOMPARE(h.tensors[0].shape, std::vector<std::int64_t>{2});
        QCOMPARE(h.tensors[1].begin, std::uint64_t(8));
        QCOMPARE(h.tensors[1].end, std::uint64_t(12));
        QVERIFY(h.metadata.empty());

        const fs::path p = dir() / "hand.safetensors";
        write_raw(p, file);
        const auto f = safetensors_file::open(p);
        QCOMPARE(f->file_bytes(), std::uint64_t(file.size()));
        QCOMPARE(f->size(), std::size_t(2));
        QCOMPARE(f->at("a").to_f32(), (std::vector<float>{1.0f, 2.0f}));
        QCOMPARE(reinterpret_cast<std::uintptr_t>(f->at("a").bytes.data()) % 4, std::uintptr_t(1));
        const auto& b = f->at("b");
        QCOMPARE(b.bytes.size(), std::size_t(4));
        QCOMPARE(std::to_integer<int>(b.bytes[3]), 4);
        QVERIFY(f->find("c") == nullptr);
        EXPECT_THROW(format_error, f->at("c"), "no tensor named 'c'");
    }

    void tensorsComeInOffsetOrder() {
        // JSON order z, a, m; data order a (0..4), m (4..8), z (8..12): the reader returns data order.
        const QByteArray header = "{" + entry("z", "\"I32\"", "[1]", "[8,12]") + "," +
                                  entry("a", "\"I32\"", "[1]", "[0,4]") + "," +
                                  entry("m", "\"I32\"", "[1]", "[4,8]") + "}";
        const auto h = parse_safetensors_header(as_span(raw_file(header, QByteArray(12, '\0'))), "x");
        QCOMPARE(h.tensors.size(), std::size_t(3));
        QCOMPARE(h.tensors[0].name, std::string("a"));
        QCOMPARE(h.tensors[1].name, std::string("m"));
        QCOMPARE(h.tensors[2].name, std::string("z"));
    }

    void zeroElementAndScalarTensorsAreLegal() {
        // An empty tensor takes no bytes (begin == end), even between others; a scalar (shape []) is 1
        // element.
        const QByteArray header = "{" + entry("empty", "\"F32\"", "[0,4096]", "[4,4]") + "," +
                                  entry("s", "\"F32\"", "[]", "[0,4]") + "," +
                                  entry("t", "\"F16\"", "[2]", "[4,8]") + "," +
                                  entry("tail", "\"BF16\"", "[3,0]", "[8,8]") + "}";
        const QByteArray data("\x00\x00\x40\x40\x00\x3c\x00\xc0", 8); // 3.0f; f16 1.0, -2.0
        const fs::path p = dir() / "empty.safetensors";
        write_raw(p, raw_file(header, data));
        const auto f = safetensors_file::open(p);
        QCOMPARE(f->size(), std::size_t(4));
        QCOMPARE(f->at("empty").numel(), std::int64_t(0));
        QVERIFY(f->at("empty").bytes.empty());
        QVERIFY(f->at("empty").to_f32().empty());
        QVERIFY(f->at("empty").all_finite());
        QCOMPARE(f->at("s").numel(), std::int64_t(1));
        QCOMPARE(f->at("s").to_f32(), std::vector<float>{3.0f});
        QCOMPARE(f->at("t").to_f32(), (std::vector<float>{1.0f, -2.0f}));
        QCOMPARE(f->at("tail").numel(), std::int64_t(0));
    }

    void headerWithMetadataAndPadding() {
        const QByteArray header =
            "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\xc3\xa9 \\\"q\\\"\"}," +
            entry("a", "\"F32\"", "[2]", "[0,8]") + "}      ";
        const auto h = parse_safetensors_header(as_span(raw_file(header, QByteArray(8, '\0'))), "x");
        QCOMPARE(h.metadata.size(), std::size_t(2));
        QCOMPARE(h.metadata.at("format"), std::string("pt"));
        QCOMPARE(h.metadata.at("note"), std::string("caf\xc3\xa9 \"q\""));
    }

    void malformed_data() {
        QTest::addColumn<QByteArray>("file");
        QTest::addColumn<QString>("message");
        const auto& e = entry; // short name: the rows below are long enough
        const QByteArray f32x2 = e("a", "\"F32\"", "[2]", "[0,8]"); // needs an 8-byte buffer
        const QByteArray d8(8, '\0');

        QTest::newRow("empty file") << QByteArray()
                                    << "file is 0 bytes, shorter than the 8-byte header length";
        QTest::newRow("5-byte file") << QByteArray("\x02\0\0\0\0", 5) << "file is 5 bytes";
        QTest::newRow("length beyond file")
            << raw_file("{}", {}, 100) << "header length field is larger than the 2 bytes that follow it";
        QTest::newRow("length over 100 MB")
            << raw_file("{}", {}, 100'000'001)
            << "header length field is larger than the limit of 100000000 bytes";
        QTest::newRow("length 2^64-1") << raw_file("{}", {}, ~quint64(0)) << "larger than the limit";
        QTest::newRow("zero-length header")
            << raw_file("") << "header is not a JSON object (it must begin with '{')";
        QTest::newRow("array header") << raw_file("[1,2]") << "header is not a JSON object";
        QTest::newRow("leading space") << raw_file(" {}") << "must begin with '{'";
        QTest::newRow("not JSON") << raw_file("{abc}")
                                  << "header is not valid UTF-8 JSON at byte 2 of the header";
        QTest::newRow("truncated JSON") << raw_file("{\"a\":") << "header is not valid UTF-8 JSON";
        QTest::newRow("garbage after JSON") << raw_file("{} x") << "header is not valid UTF-8 JSON";
        QTest::newRow("comment") << raw_file("{/*c*/}") << "header is not valid UTF-8 JSON";
        QTest::newRow("invalid UTF-8 in name")
            << raw_file("{\"a\xff\":{}}") << "not valid UTF-8 JSON at byte";
        QTest::newRow("overlong UTF-8") << raw_file("{\"\xc0\xaf\":{}}") << "not valid UTF-8 JSON at byte";
        QTest::newRow("lone surrogate escape")
            << raw_file("{\"\\ud800\":{}}") << "header is not valid UTF-8 JSON";
        QTest::newRow("entry not object")
            << raw_file("{\"a\":[1]}")
            << "tensor 'a': entry must be an object {dtype, shape, data_offsets}, "
               "got an array";
        QTest::newRow("entry null") << raw_file("{\"a\":null}") << "tensor 'a': entry must be an object";
        QTest::newRow("missing dtype")
            << raw_file("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", d8) << "tensor 'a': missing dtype";
        QTest::newRow("missing shape") << raw_file("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", d8)
                                       << "tensor 'a': missing shape";
        QTest::newRow("missing data_offsets") << raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", d8)
                                              << "tensor 'a': missing data_offsets";
        QTest::newRow("unknown key") << raw_file(
                                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
                                            "\"stride\":[1]}}",
                                            d8)
                                     << "tensor 'a': unknown key 'stride'";
        QTest::newRow("duplicate key in entry")
            << raw_file("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                        d8)
            << "tensor 'a': duplicate key 'dtype'";
        QTest::newRow("dtype not string") << raw_file("{" + e("a", "32", "[2]", "[0,8]") + "}", d8)
                                          << "tensor 'a': dtype must be a string, got 32";
        QTest::newRow("unknown dtype") << raw_file("{" + e("a", "\"F33\"", "[2]", "[0,8]") + "}", d8)
                                       << "tensor 'a': dtype is not one the format defines";
        QTest::newRow("lower-case dtype") << raw_file("{" + e("a", "\"f32\"", "[2]", "[0,8]") + "}", d8)
                                          << "tensor 'a': dtype is not one the format defines";
        QTest::newRow("shape not array")
            << raw_file("{" + e("a", "\"F32\"", "\"2\"", "[0,8]") + "}", d8)
            << "tensor 'a': shape must be an array of non-negative integers, got a string";
        QTest::newRow("negative dimension")
            << raw_file("{" + e("a", "\"F32\"", "[-2,-1]", "[0,8]") + "}", d8)
            << "tensor 'a': shape must be an array of non-negative integers, got a negative number in it";
        QTest::newRow("float dimension") << raw_file("{" + e("a", "\"F32\"", "[2.0]", "[0,8]") + "}", d8)
                                         << "got a non-integer number in it";
        QTest::newRow("exponent dimension") << raw_file("{" + e("a", "\"F32\"", "[1e300]", "[0,8]") + "}", d8)
                                            << "got a non-integer number in it";
        QTest::newRow("nested shape")
            << raw_file("{" + e("a", "\"F32\"", "[[2]]", "[0,8]") + "}", d8) << "got an array in it";
        QTest::newRow("dimension over int64")
            << raw_file("{" + e("a", "\"U8\"", "[9223372036854775808]", "[0,8]") + "}", d8)
            << "tensor 'a': shape dimension 9223372036854775808 is absurdly large";
        QTest::newRow("dimension over uint64")
            << raw_file("{" + e("a", "\"U8\"", "[18446744073709551616]", "[0,8]") + "}", d8)
            << "got a non-integer number in it";
        QTest::newRow("numel overflow")
            << raw_file("{" + e("a", "\"U8\"", "[4294967296,4294967296]", "[0,8]") + "}", d8)
            << "tensor 'a': shape [4294967296, 4294967296] of U8 overflows";
        QTest::newRow("byte count overflow")
            << raw_file("{" + e("a", "\"F64\"", "[4611686018427387904]", "[0,8]") + "}", d8)
            << "tensor 'a': shape [4611686018427387904] of F64 overflows 64-bit byte counts";
        QTest::newRow("offsets not array")
            << raw_file("{" + e("a", "\"F32\"", "[2]", "{}") + "}", d8)
            << "tensor 'a': data_offsets must be [begin, end], two non-negative "
               "integers, got an object";
        QTest::newRow("one offset") << raw_file("{" + e("a", "\"F32\"", "[2]", "[8]") + "}", d8)
                                    << "got 1 value";
        QTest::newRow("three offsets")
            << raw_file("{" + e("a", "\"F32\"", "[2]", "[0,8,8]") + "}", d8) << "got more values";
        QTest::newRow("negative offset")
            << raw_file("{" + e("a", "\"F32\"", "[2]", "[-8,0]") + "}", d8) << "got a negative number in it";
        QTest::newRow("string offset")
            << raw_file("{" + e("a", "\"F32\"", "[2]", "[\"0\",8]") + "}", d8) << "got a string in it";
        QTest::newRow("begin after end") << raw_file("{" + e("a", "\"F32\"", "[0]", "[8,0]") + "}", d8)
                                         << "tensor 'a': data_offsets [8, 0] have begin > end";
        QTest::newRow("size mismatch")
            << raw_file("{" + e("x", "\"F32\"", "[2,2]", "[0,12]") + "}", QByteArray(12, 0))
            << "tensor 'x': data_offsets [0, 12] hold 12 bytes but F32 [2, 2] needs 16";
        QTest::newRow("past the buffer")
            << raw_file("{" + e("a", "\"F32\"", "[4]", "[0,16]") + "}", d8)
            << "tensor 'a': data_offsets [0, 16] reach past the end of the 8-byte data "
               "buffer";
        QTest::newRow("huge offsets")
            << raw_file("{" + e("a", "\"U8\"", "[1]", "[18446744073709551614,18446744073709551615]") + "}",
                        d8)
            << "reach past the end of the 8-byte data buffer";
        QTest::newRow("overlap") << raw_file("{" + e("a", "\"F32\"", "[2]", "[0,8]") + "," +
                                                 e("b", "\"F32\"", "[2]", "[4,12]") + "}",
                                             QByteArray(12, 0))
                                 << "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]";
        QTest::newRow("same range twice") << raw_file("{" + e("a", "\"F32\"", "[2]", "[0,8]") + "," +
                                                          e("b", "\"F32\"", "[2]", "[0,8]") + "}",
                                                      d8)
                                          << "tensor 'b': data_offsets [0, 8] overlap tensor 'a' [0, 8]";
        QTest::newRow("empty tensor inside another")
            << raw_file("{" + f32x2 + "," + e("z", "\"F32\"", "[0]", "[4,4]") + "}", d8)
            << "tensor 'z': data_offsets "
               "[4, 4] overlap tensor 'a'";
        QTest::newRow("gap")
            << raw_file("{" + e("a", "\"F32\"", "[1]", "[0,4]") + "," + e("b", "\"F32\"", "[1]", "[8,12]") +
                            "}",
                        QByteArray(12, 0))
            << "gap in the data buffer: bytes 4 to 8 belong to no tensor (before tensor 'b')";
        QTest::newRow("gap at start") << raw_file("{" + e("a", "\"F32\"", "[1]", "[4,8]") + "}", d8)
                                      << "gap in the data buffer: bytes 0 to 4";
        QTest::newRow("trailing bytes")
            << raw_file("{" + f32x2 + "}", QByteArray(12, 0))
            << "data buffer has 4 bytes after the last tensor that belong to no tensor";
        QTest::newRow("data but no tensors")
            << raw_file("{}", d8) << "data buffer has 8 bytes after the header (which lists no tensors)";
        QTest::newRow("metadata not object")
            << raw_file("{\"__metadata__\":\"pt\"}")
            << "__metadata__ must be an object of string values, got a string";
        QTest::newRow("metadata number value") << raw_file("{\"__metadata__\":{\"format\":1}}")
                                               << "__metadata__ value of 'format' must be a string, got 1";
        QTest::newRow("metadata nested value") << raw_file("{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}")
                                               << "__metadata__ value of 'k' must be a string, got an object";
        QTest::newRow("metadata duplicate key") << raw_file("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}")
                                                << "__metadata__ has a duplicate key 'k'";
        QTest::newRow("duplicate metadata")
            << raw_file("{\"__metadata__\":{},\"__metadata__\":{}}") << "duplicate __metadata__";
        QTest::newRow("duplicate tensor name") << raw_file("{" + e("a", "\"F32\"", "[1]", "[0,4]") + "," +
                                                               e("a", "\"F32\"", "[1]", "[4,8]") + "}",
                                                           d8)
                                               << "duplicate tensor name 'a'";
        QTest::newRow("empty tensor name")
            << raw_file("{" + e("", "\"F32\"", "[2]", "[0,8]") + "}", d8) << "empty tensor name";
        QTest::newRow("control character in name")
            << raw_file("{\"a\\nb\":7}") << "tensor 'a\\x0ab': entry must be an object";
    }
    void malformed() {
        QFETCH(QByteArray, file);
        QFETCH(QString, message);
        EXPECT_THROW(format_error, parse_safetensors_header(as_span(file), "bad.safetensors"), message);
        // Every message names the file it is about.
        EXPECT_THROW(format_error, parse_safetensors_header(as_span(file), "bad.safetensors"),
                     "bad.safetensors: ");
    }

    void malformedFilesOnDisk() {
        // The mapping path: an empty file must be a format error, not a failed mmap.
        const fs::path empty = dir() / "empty-file.safetensors";
        write_raw(empty, {});
        EXPECT_THROW(format_error, safetensors_file::open(empty), "file is 0 bytes");
        const fs::path short_file = dir() / "short.safetensors";
        write_raw(short_file, "1234567");
        EXPECT_THROW(format_error, safetensors_file::open(short_file), "file is 7 bytes");
        const fs::path gap = dir() / "gap.safetensors";
        write_raw(gap, raw_file("{" + entry("a", "\"F32\"", "[1]", "[4,8]") + "}", QByteArray(8, 0)));
        EXPECT_THROW(format_error, safetensors_file::open(gap),
                     QString::fromStdString(gap.string()) + ": gap");
    }

    void openErrors() {
        EXPECT_THROW(io_error, safetensors_file::open(dir() / "missing.safetensors"),
                     "missing.safetensors: cannot open: No such file or directory");
        EXPECT_THROW(io_error, safetensors_file::open(dir()), "not a regular file");
    }

    void deepNestingIsRejectedWithoutRecursion() {
        // 8 MB of '[' in the places where arrays or objects can appear: each is turned away at the first
        // bracket that does not fit the schema, so nothing recurses (a recursive parser would overflow the
        // stack) and nothing large is built.
        const QByteArray deep(8 << 20, '[');
        EXPECT_THROW(format_error, parse_safetensors_header(as_span(raw_file(deep)), "x"),
                     "header is not a JSON object");
        EXPECT_THROW(format_error, parse_safetensors_header(as_span(raw_file("{\"a\":" + deep)), "x"),
                     "tensor 'a': entry must be an object");
        EXPECT_THROW(
            format_error,
            parse_safetensors_header(as_span(raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":" + deep)), "x"),
            "tensor 'a': shape must be an array of non-negative integers, got an array in it");
        EXPECT_THROW(format_error,
                     parse_safetensors_header(as_span(raw_file("{\"__metadata__\":{\"k\":" + deep)), "x"),
                     "__metadata__ value of 'k' must be a string, got an array");
        const QByteArray objects = QByteArray("{") + QByteArray(4 << 20, '{');
        EXPECT_THROW(format_error, parse_safetensors_header(as_span(raw_file(objects)), "x"),
                     "header is not valid UTF-8 JSON");
    }

    void longNamesAreShortenedInMessages() {
        const std::string name(5000, 'n');
        const QByteArray file = raw_file("{\"" + QByteArray::fromStdString(name) + "\":1}");
        try {
            parse_safetensors_header(as_span(file), "x");
            QFAIL("accepted");
        } catch (const format_error& e) {
            QVERIFY(std::strlen(e.what()) < 400);
            QVERIFY(QString(e.what()).contains("nnn...': entry must be an object"));
        }
    }

    // Every prefix of a valid file and every single-byte corruption of its header is either accepted or
    // rejected with format_error: never another exception, never a crash.
    void truncationsAndCorruptionsOnlyThrowFormatError() {
        const QByteArray file = raw_file(valid_header, valid_data);
        for (int len = 0; len < file.size(); ++len) {
            const QString failure = expect_throw<format_error>(
                [&] { parse_safetensors_header(as_span(file.left(len)), "x"); }, "x: ");
            QVERIFY2(failure.isEmpty(), qPrintable(QString("prefix %1: %2").arg(len).arg(failure)));
        }
        // The only harmless corruptions: a tensor name's single character becoming another printable one.
        const int name_a = 8 + valid_header.indexOf("\"a\"") + 1,
                  name_b = 8 + valid_header.indexOf("\"b\"") + 1;
        int accepted = 0;
        for (int pos = 0; pos < 8 + valid_header.size(); ++pos) {
            for (const char c : {'\0', ' ', '"', '{', '}', '[', ']', ',', ':', '0', '9', '-', 'F', '\xff'}) {
                QByteArray bad = file;
                if (bad[pos] == c) continue;
                bad[pos] = c;
                try {
                    parse_safetensors_header(as_span(bad), "x");
                    ++accepted;
                    QVERIFY2(pos == name_a || pos == name_b,
                             qPrintable(QString("byte %1 set to %2 was accepted").arg(pos).arg(int(c))));
                } catch (const format_error&) {
                } catch (const std::exception& e) {
                    QFAIL(qPrintable(QString("byte %1 set to %2: %3").arg(pos).arg(int(c)).arg(e.what())));
                }
            }
        }
        // Each name takes 11 of the 14 bytes tried; '"', NUL (a raw control character) and 0xff (not UTF-8)
        // are rejected there too.
        QCOMPARE(accepted, 2 * 11);
    }

    // ---- conversion ----------------------------------------------------------------------------------
    void toF32OnIntegerTensorIsUnsupported() {
        const std::vector<std::int32_t> v{1, -2, 3};
        const fs::path p = dir() / "i32.safetensors";
        write_safetensors(p, {{"ints", dtype::I32, {3}, bytes_of(v)}});
        const auto f = safetensors_file::open(p);
        EXPECT_THROW(unsupported_error, f->at("ints").to_f32(),
                     "ints: dtype I32 cannot be read as float32: adapter weights must be F32, F16 or BF16");
        std::vector<float> out(3);
        EXPECT_THROW(unsupported_error, f->at("ints").to_f32(out), "dtype I32");
        QVERIFY(f->at("ints").all_finite()); // integers are always finite
    }

    void toF32ChecksOutputSize() {
        const std::vector<float> v{1, 2, 3};
        const fs::path p = dir() / "size.safetensors";
        write_safetensors(p, {{"w", dtype::F32, {3}, bytes_of(v)}});
        const auto f = safetensors_file::open(p);
        std::vector<float> out(2);
        EXPECT_THROW(shape_mismatch, f->at("w").to_f32(out),
                     "output holds 2 floats but the tensor has 3 elements");
    }

    void allFiniteInEveryFloatDtype() {
        struct float_case {
            dtype type;
            std::vector<std::uint8_t> finite; // little-endian raw elements, all finite (incl. max, subnormal)
            std::vector<std::vector<std::uint8_t>> bad; // one non-finite element each: NaN, +Inf, -Inf
        };
        const float_case cases[] = {
            {dtype::F32,
             {0x00, 0x00, 0x80, 0x3f, 0xff, 0xff, 0x7f, 0x7f, 0x01, 0x00, 0x00, 0x80},
             {{0x00, 0x00, 0xc0, 0x7f},
              {0x00, 0x00, 0x80, 0x7f},
              {0x00, 0x00, 0x80, 0xff},
              {0x01, 0x00, 0x80, 0x7f}}},
            {dtype::F16,
             {0x00, 0x3c, 0xff, 0x7b, 0x01, 0x80, 0xff, 0xfb},
             {{0x00, 0x7e}, {0x00, 0x7c}, {0x00, 0xfc}, {0x01, 0x7c}}},
            {dtype::BF16,
             {0x80, 0x3f, 0x7f, 0x7f, 0x01, 0x00, 0x7f, 0xff},
             {{0xc0, 0x7f}, {0x80, 0x7f}, {0x80, 0xff}, {0x81, 0xff}}},
        };
        for (const auto& c : cases) {
            const auto size = dtype_size(c.type);
            const auto n = std::int64_t(c.finite.size() / size);
            const fs::path p = dir() / "finite.safetensors";
            write_safetensors(p, {{"w", c.type, {n}, bytes_of(c.finite)}});
            QVERIFY2(safetensors_file::open(p)->at("w").all_finite(), dtype_name(c.type).data());
            for (const auto& bad : c.bad) {
                // The non-finite element goes last, after the finite ones, so the whole buffer is scanned.
                std::vector<std::uint8_t> bytes = c.finite;
                bytes.insert(bytes.end(), bad.begin(), bad.end());
                write_safetensors(p, {{"w", c.type, {n + 1}, bytes_of(bytes)}});
                const auto f = safetensors_file::open(p);
                QVERIFY2(!f->at("w").all_finite(), dtype_name(c.type).data());
                const auto values = f->at("w").to_f32();
                QVERIFY(!std::isfinite(values.back()));
                QVERIFY(
                    std::all_of(values.begin(), values.end() - 1, [](float x) { return std::isfinite(x); }));
            }
        }
    }

    void encodeF32() {
        const std::vector<float> v{1.0f, -2.0f, 0.5f};
        // Independent expectations: IEEE encodings of 1, -2 and 0.5 in each format, little-endian.
        const auto f16 = encode_f32(v, dtype::F16);
        const std::vector<std::uint8_t> f16_expected{0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38};
        QCOMPARE(f16.size(), f16_expected.size());
        QVERIFY(std::memcmp(f16.data(), f16_expected.data(), f16.size()) == 0);
        const auto bf16 = encode_f32(v, dtype::BF16);
        const std::vector<std::uint8_t> bf16_expected{0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f};
        QCOMPARE(bf16.size(), bf16_expected.size());
        QVERIFY(std::memcmp(bf16.data(), bf16_expected.data(), bf16.size()) == 0);
        const auto f32 = encode_f32(v, dtype::F32);
        const std::vector<std::uint8_t> f32_expected{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0, 0x3f};
        QCOMPARE(f32.size(), f32_expected.size());
        QVERIFY(std::memcmp(f32.data(), f32_expected.data(), f32.size()) == 0);
        // Rounding: 1 + 2^-11 is halfway between two f16 values and goes to the even one (1.0).
        const auto tie = encode_f32(std::vector<float>{1.0f + 0x1p-11f}, dtype::F16);
        QCOMPARE(std::to_integer<int>(tie[0]), 0x00);
        QCOMPARE(std::to_integer<int>(tie[1]), 0x3c);
        EXPECT_THROW(unsupported_error, encode_f32(v, dtype::I8), "cannot encode float32 values as I8");
    }

    // ---- writing ---------------------------------------------------------------------------------------
    void roundTripEveryFloatDtype() {
        // Values exactly representable in all three formats (few significant bits, in f16 range), plus
        // the f16 extremes where the format allows them, so equality after the round trip is exact.
        std::vector<float> common{0.0f, -0.0f, 1.0f, -1.5f, 0.375f, 96.0f, -1024.0f, 0x1p-14f, 3.0f / 64.0f};
        for (const dtype t : {dtype::F32, dtype::F16, dtype::BF16}) {
            std::vector<float> v = common;
            if (t != dtype::BF16) v.push_back(65504.0f); // f16 max, 11 significant bits
            if (t != dtype::BF16) v.push_back(0x1p-24f); // smallest f16 subnormal
            if (t != dtype::F16) v.push_back(0x1p-130f); // bf16/f32 subnormal
            if (t == dtype::F32) v.push_back(3.14159274f);
            const auto encoded = encode_f32(v, t);
            const fs::path p = dir() / "float.safetensors";
            write_safetensors(p, {{"w", t, {std::int64_t(v.size()), 1}, encoded}});
            const auto f = safetensors_file::open(p);
            const auto& w = f->at("w");
            QCOMPARE(w.type(), t);
            QCOMPARE(w.shape(), (std::vector<std::int64_t>{std::int64_t(v.size()), 1}));
            const auto back = w.to_f32();
            QCOMPARE(back.size(), v.size());
            for (std::size_t i = 0; i < v.size(); ++i)
                QVERIFY2(std::bit_cast<std::uint32_t>(back[i]) == std::bit_cast<std::uint32_t>(v[i]),
                         qPrintable(QString("%1 element %2: %3 != %4")
                                        .arg(dtype_name(t).data())
                                        .arg(i)
                                        .arg(back[i])
                                        .arg(v[i])));
            QVERIFY(w.all_finite());
        }
    }

    void roundTripIntegerDtypesAsRawBytes() {
        const std::vector<std::int64_t> i64{0, -1, std::numeric_limits<std::int64_t>::min(), 1234567890123};
        const std::vector<std::uint8_t> u8{0, 1, 127, 128, 255};
        const std::vector<std::int16_t> i16{-32768, 32767, 7, -7, 0, 1};
        const fs::path p = dir() / "ints.safetensors";
        write_safetensors(p, {{"i64", dtype::I64, {2, 2}, bytes_of(i64)},
                              {"u8", dtype::U8, {5}, bytes_of(u8)},
                              {"i16", dtype::I16, {3, 2}, bytes_of(i16)}});
        const auto f = safetensors_file::open(p);
        QCOMPARE(f->size(), std::size_t(3));
        const auto same = [&](const char* name, std::span<const std::byte> expected) {
            const auto& v = f->at(name);
            return v.bytes.size() == expected.size() &&
                   std::memcmp(v.bytes.data(), expected.data(), expected.size()) == 0;
        };
        QVERIFY(same("i64", bytes_of(i64)));
        QVERIFY(same("u8", bytes_of(u8)));
        QVERIFY(same("i16", bytes_of(i16)));
        QCOMPARE(f->at("i64").type(), dtype::I64);
        QCOMPARE(f->at("i16").shape(), (std::vector<std::int64_t>{3, 2}));
        QCOMPARE(f->at("i64").numel(), std::int64_t(4));
    }

    void metadataRoundTrip() {
        const std::map<std::string, std::string> meta{{"format", "pt"},
                                                      {"quote\"key", "line\nbreak\ttab"},
                                                      {"unicode", "\xe6\x97\xa5\xe6\x9c\xac"},
                                                      {"", ""}};
        const std::vector<float> v{1.0f};
        const fs::path p = dir() / "meta.safetensors";
        write_safetensors(p, {{"w", dtype::F32, {1}, bytes_of(v)}}, meta);
        const auto f = safetensors_file::open(p);
        QCOMPARE(f->metadata(), meta);
        // No metadata: the key is left out entirely.
        write_safetensors(p, {{"w", dtype::F32, {1}, bytes_of(v)}});
        QVERIFY(!read_all(p).contains("__metadata__"));
        QVERIFY(safetensors_file::open(p)->metadata().empty());
    }

    void zeroElementRoundTrip() {
        const std::vector<float> v{5.0f, 6.0f};
        const fs::path p = dir() / "zero.safetensors";
        write_safetensors(p, {{"b", dtype::F32, {2}, bytes_of(v)},
                              {"a_empty", dtype::F16, {0, 16}, {}},
                              {"c_empty", dtype::BF16, {4, 0}, {}}});
        const auto f = safetensors_file::open(p);
        QCOMPARE(f->size(), std::size_t(3));
        QCOMPARE(f->at("a_empty").numel(), std::int64_t(0));
        QCOMPARE(f->at("a_empty").shape(), (std::vector<std::int64_t>{0, 16}));
        QCOMPARE(f->at("c_empty").shape(), (std::vector<std::int64_t>{4, 0}));
        QCOMPARE(f->at("b").to_f32(), v);
    }

    void headerIsAlignedAndSortedByName() {
        const std::vector<float> z{1.0f}, m{2.0f, 3.0f};
        const std::vector<std::uint8_t> a{9, 9, 9}; // odd size: later data is unaligned in the buffer
        const fs::path p = dir() / "sorted.safetensors";
        write_safetensors(p,
                          {{"zeta", dtype::F32, {1}, bytes_of(z)},
                           {"alpha", dtype::U8, {3}, bytes_of(a)},
                           {"mid", dtype::F32, {2}, bytes_of(m)}},
                          {{"format", "pt"}});
        const QByteArray raw = read_all(p);
        const quint64 n = le64(raw);
        QCOMPARE((8 + n) % 8, quint64(0));
        QCOMPARE(quint64(raw.size()), 8 + n + 3 + 8 + 4);
        const QByteArray header = raw.mid(8, int(n));
        QVERIFY(header.startsWith('{'));
        const int close = header.lastIndexOf('}');
        QCOMPARE(header.mid(close + 1), QByteArray(header.size() - close - 1, ' ')); // padding is spaces only
        QVERIFY(header.size() - close - 1 < 8);
        const int ia = header.indexOf("\"alpha\""), im = header.indexOf("\"mid\""),
                  iz = header.indexOf("\"zeta\"");
        QVERIFY(ia > 0 && ia < im && im < iz);
        QVERIFY(header.contains("\"__metadata__\":{\"format\":\"pt\"}"));
        // Data in name order: alpha's 3 bytes, then mid (2 floats), then zeta.
        const QByteArray data = raw.mid(int(8 + n));
        QCOMPARE(data.left(3), QByteArray("\x09\x09\x09"));
        float mid0 = 0, zeta0 = 0;
        std::memcpy(&mid0, data.constData() + 3, 4);
        std::memcpy(&zeta0, data.constData() + 11, 4);
        QCOMPARE(mid0, 2.0f);
        QCOMPARE(zeta0, 1.0f);
        // Another JSON parser agrees with the offsets we write.
        QJsonParseError err{};
        const auto doc = QJsonDocument::fromJson(header, &err);
        QCOMPARE(err.error, QJsonParseError::NoError);
        const auto offsets = doc.object().value("mid").toObject().value("data_offsets").toArray();
        QCOMPARE(offsets.at(0).toInt(), 3);
        QCOMPARE(offsets.at(1).toInt(), 11);
        const auto f = safetensors_file::open(p);
        QCOMPARE(f->tensors()[0].name(), std::string("alpha"));
        QCOMPARE(f->tensors()[2].name(), std::string("zeta"));
        QCOMPARE(f->at("mid").to_f32(), m);
    }

    void writerValidatesTensors() {
        const std::vector<float> v{1.0f, 2.0f, 3.0f};
        const fs::path p = dir() / "invalid.safetensors";
        EXPECT_THROW(shape_mismatch, write_safetensors(p, {{"w", dtype::F32, {2, 2}, bytes_of(v)}}),
                     "tensor 'w': 12 bytes do not hold F32 [2, 2]");
        EXPECT_THROW(shape_mismatch, write_safetensors(p, {{"w", dtype::F16, {3}, bytes_of(v)}}),
                     "12 bytes do not hold F16 [3]");
        EXPECT_THROW(shape_mismatch, write_safetensors(p, {{"w", dtype::U8, {-12}, bytes_of(v)}}),
                     "do not hold U8 [-12]");
        EXPECT_THROW(
            validation_error,
            write_safetensors(p, {{"w", dtype::F32, {3}, bytes_of(v)}, {"w", dtype::F32, {3}, bytes_of(v)}}),
            "duplicate tensor name 'w'");
        EXPECT_THROW(validation_error, write_safetensors(p, {{"", dtype::F32, {3}, bytes_of(v)}}),
                     "empty tensor name");
        EXPECT_THROW(validation_error, write_safetensors(p, {{"__metadata__", dtype::F32, {3}, bytes_of(v)}}),
                     "'__metadata__' cannot name a tensor");
        EXPECT_THROW(validation_error, write_safetensors(p, {{"bad\xff", dtype::F32, {3}, bytes_of(v)}}),
                     "is not valid UTF-8");
        QVERIFY(!fs::exists(p));
        QVERIFY(temp_leftovers(dir()).empty());
    }

    // ---- atomic writes ---------------------------------------------------------------------------------
    void atomicWriteReplacesAndSetsMode() {
        const fs::path p = dir() / "replace.txt";
        write_file_atomic(p, std::string_view("first"));
        write_file_atomic(p, std::string_view("second version"));
        QCOMPARE(read_all(p), QByteArray("second version"));
        struct stat st {};
        QCOMPARE(::stat(p.c_str(), &st), 0);
        QCOMPARE(int(st.st_mode & 07777), 0644);
        QVERIFY(temp_leftovers(dir()).empty());
    }

    void uncommittedWriterLeavesNothing() {
        const fs::path p = dir() / "abandoned.txt";
        {
            atomic_file_writer w(p);
            w.write(std::string_view("partial"));
            QCOMPARE(temp_leftovers(dir()).size(), std::size_t(1)); // the temporary exists meanwhile
        }
        QVERIFY(!fs::exists(p));
        QVERIFY(temp_leftovers(dir()).empty());
    }

    void failedWriteKeepsOldFile() {
        const fs::path p = dir() / "precious.safetensors";
        const std::vector<float> small{1.0f, 2.0f};
        write_safetensors(p, {{"w", dtype::F32, {2}, bytes_of(small)}});
        const QByteArray before = read_all(p);

        // Simulate a full disk: files may not grow past 4 kB, and SIGXFSZ is ignored so write() fails with
        // EFBIG instead of killing the process. 64 kB of data cannot fit.
        const std::vector<float> big(16384, 0.5f);
        rlimit old_limit{};
        QCOMPARE(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
        const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
        rlimit limit = old_limit;
        limit.rlim_cur = 4096;
        QCOMPARE(::setrlimit(RLIMIT_FSIZE, &limit), 0);
        QString failure = expect_throw<io_error>(
            [&] {
                write_safetensors(p, {{"w", dtype::F32, {16384}, bytes_of(big)}});
            },
            "precious.safetensors: cannot write: File too large");
        const QString direct_failure = expect_throw<io_error>([&] { write_file_atomic(p, bytes_of(big)); },
                                                              "cannot write: File too large");
        ::setrlimit(RLIMIT_FSIZE, &old_limit);
        std::signal(SIGXFSZ, old_handler);

        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        QVERIFY2(direct_failure.isEmpty(), qPrintable(direct_failure));
        QCOMPARE(read_all(p), before);
        QCOMPARE(safetensors_file::open(p)->at("w").to_f32(), small);
        QVERIFY(temp_leftovers(dir()).empty());
    }

    void writeIntoMissingFolderFails() {
        const fs::path p = dir() / "no-such-folder" / "x.safetensors";
        const std::vector<float> v{1.0f};
        EXPECT_THROW(io_error, write_safetensors(p, {{"w", dtype::F32, {1}, bytes_of(v)}}),
                     "cannot write: No such file or directory");
        EXPECT_THROW(io_error, write_file_atomic(p, std::string_view("x")), "no-such-folder/x.safetensors: ");
    }

    void writeIntoReadOnlyFolderFails() {
        if (::geteuid() == 0) QSKIP("running as root: permissions are not enforced");
        const fs::path ro = dir() / "read-only";
        fs::create_directory(ro);
        fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
        const std::vector<float> v{1.0f};
        const QString failure = expect_throw<io_error>(
            [&] {
                write_safetensors(ro / "x.safetensors", {{"w", dtype::F32, {1}, bytes_of(v)}});
            },
            "cannot write: Permission denied");
        fs::permissions(ro, fs::perms::owner_all);
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        QVERIFY(fs::is_empty(ro));
    }

    // ---- real files ------------------------------------------------------------------------------------
    void readsTinyStoriesModel() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto f = safetensors_file::open(lorafleet::test::fixtures_dir() /
                                              "models/tinystories-656k/model.safetensors");
        QCOMPARE(f->size(), std::size_t(20));
        QCOMPARE(f->metadata().size(), std::size_t(2));
        QCOMPARE(f->metadata().at("format"), std::string("pt"));
        QCOMPARE(f->metadata().at("model.embed_tokens.weight"), std::string("lm_head.weight"));
        const auto& head = f->at("lm_head.weight");
        QCOMPARE(head.shape(), (std::vector<std::int64_t>{2048, 128}));
        QCOMPARE(f->tensors()[0].name(), std::string("lm_head.weight")); // first in the data buffer
        QCOMPARE(f->at("model.layers.1.mlp.down_proj.weight").shape(), (std::vector<std::int64_t>{128, 384}));
        // The README says the weights are float32 holding exact bf16 values: the low 16 bits are zero.
        for (const auto& t : f->tensors()) {
            QCOMPARE(t.type(), dtype::F32);
            const auto values = t.to_f32();
            QCOMPARE(std::int64_t(values.size()), t.numel());
            QVERIFY2(std::all_of(values.begin(), values.end(),
                                 [](float x) { return (std::bit_cast<std::uint32_t>(x) & 0xffffu) == 0; }),
                     t.name().c_str());
            QVERIFY(t.all_finite());
        }
        // model.norm.weight starts 0.640625, 0.69921875, 0.68359375 (read with Python's struct).
        const auto norm = f->at("model.norm.weight").to_f32();
        QCOMPARE(norm[0], 0.640625f);
        QCOMPARE(norm[1], 0.69921875f);
        QCOMPARE(norm[2], 0.68359375f);
    }

    void readsAronaAdapter() {
        LORAFLEET_REQUIRE_FIXTURES();
        const fs::path p = lorafleet::test::fixtures_dir() /
                           "adapters/tinyllama-1.1b-chat-arona-ckpt75/adapter_model.safetensors";
        const auto f = safetensors_file::open(p);
        QCOMPARE(f->size(), std::size_t(88)); // 89 header entries: 88 tensors and __metadata__
        QCOMPARE(f->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
        QCOMPARE(f->file_bytes(), std::uint64_t(2264312));
        const auto& a = f->at("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
        QCOMPARE(a.shape(), (std::vector<std::int64_t>{4, 2048}));
        QCOMPARE(f->at("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight").shape(),
                 (std::vector<std::int64_t>{2048, 4}));
        const auto& b = f->at("base_model.model.model.layers.21.self_attn.v_proj.lora_B.weight");
        QCOMPARE(b.shape(), (std::vector<std::int64_t>{256, 4}));
        const auto values = b.to_f32();
        QCOMPARE(values.size(), std::size_t(1024));
        // Reference numbers read with Python's struct module.
        QCOMPARE(values.front(), 0.0019354678224772215f);
        QCOMPARE(values.back(), 0.0016079249326139688f);
        const double sum = std::accumulate(values.begin(), values.end(), 0.0);
        QVERIFY(std::abs(sum - -0.026302971939003328) < 1e-9);
        // The ranges tile the buffer in order, and every tensor converts.
        std::uint64_t expected_begin = 0;
        for (const auto& t : f->tensors()) {
            QCOMPARE(t.info->begin, expected_begin);
            expected_begin = t.info->end;
            QVERIFY(t.all_finite());
            QCOMPARE(std::int64_t(t.to_f32().size()), t.numel());
        }
        QCOMPARE(8 + 11504 + expected_begin, f->file_bytes());
    }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
