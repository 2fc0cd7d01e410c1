// SHA-256 against the FIPS 180-4 / NIST example vectors, incremental feeding in odd chunk sizes, and
// the file variant against the in-memory one.
#include "engine/core/error.hpp"
#include "engine/core/sha256.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <fstream>

using lorafleet::sha256;

namespace {
std::string hex_of(std::string_view s) {
    sha256 h;
    h.update(s);
    return h.hex_digest();
}
} // namespace

class TestSha256 : public QObject {
    Q_OBJECT
private slots:
    void nistVectors() {
        QCOMPARE(hex_of(""), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        QCOMPARE(hex_of("abc"),
                 std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        QCOMPARE(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                 std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
        QCOMPARE(hex_of(std::string(1000000, 'a')),
                 std::string("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    }
    void chunkingDoesNotMatter() {
        std::string text;
        for (int i = 0; i < 1000; ++i)
            text += char('a' + (i * 7) % 26);
        const std::string whole = hex_of(text);
        for (std::size_t chunk : {1u, 3u, 55u, 56u, 63u, 64u, 65u, 127u}) {
            sha256 h;
            for (std::size_t at = 0; at < text.size(); at += chunk)
                h.update(std::string_view(text).substr(at, chunk));
            QCOMPARE(h.hex_digest(), whole);
        }
    }
    void fileMatchesMemory() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("x.bin").toStdString();
        std::string text(3 << 20, '\0');
        for (std::size_t i = 0; i < text.size(); ++i)
            text[i] = char(i * 2654435761u >> 13);
        std::ofstream(path, std::ios::binary) << text;
        QCOMPARE(lorafleet::sha256_file_hex(path), hex_of(text));
        QVERIFY_THROWS_EXCEPTION(lorafleet::io_error,
                                 lorafleet::sha256_file_hex(dir.filePath("missing").toStdString()));
    }
};

QTEST_APPLESS_MAIN(TestSha256)
#include "test_sha256.moc"
