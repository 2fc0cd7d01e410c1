// safetensors_file::release_pages: after a full read of a mapped file (what import validation and the
// compression's module reader do), releasing a tensor's pages or the whole file's takes them out of this
// process's resident set — measured on the mapping itself in /proc/self/smaps — while every value reads
// back identical afterwards (nothing is lost: the pages come back from the page cache). A view that does
// not lie in the file's mapping (here over a heap buffer, where MADV_DONTNEED would zero the memory) is
// ignored: the buffer keeps its values.
#include "engine/io/safetensors.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace lorafleet;

namespace {

// Resident kB of the mapping that contains `address` (its /proc/self/smaps entry), or -1 when none does.
long resident_kb_of_mapping(const void* address) {
    const auto at = reinterpret_cast<std::uintptr_t>(address);
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool inside = false;
    while (std::getline(smaps, line)) {
        std::uintptr_t lo = 0, hi = 0;
        char dash = 0;
        std::istringstream head(line);
        if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
            inside = lo <= at && at < hi;
            continue;
        }
        if (inside && line.rfind("Rss:", 0) == 0) return std::stol(line.substr(4));
    }
    return -1;
}

std::vector<float> ramp(std::size_t n, float offset) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = offset + float(i % 100003) * 0.25f;
    return v;
}

double sum_of(const io::tensor_view& t) {
    double s = 0;
    for (float x : t.to_f32())
        s += x;
    return s;
}

} // namespace

class TestSafetensorsPages : public QObject {
    Q_OBJECT
    QTemporaryDir m_dir;
    std::string m_path;
    std::vector<float> m_a, m_b;

private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        m_path = m_dir.filePath("big.safetensors").toStdString();
        m_a = ramp(std::size_t(4) << 20, 1.0f);  // 16 MiB
        m_b = ramp(std::size_t(2) << 20, -7.0f); // 8 MiB
        const auto ab = io::encode_f32(m_a, io::dtype::F32);
        const auto bb = io::encode_f32(m_b, io::dtype::F32);
        io::write_safetensors(m_path, {{"a", io::dtype::F32, {std::int64_t(m_a.size())}, ab},
                                       {"b", io::dtype::F32, {std::int64_t(m_b.size())}, bb}});
    }

    void releasedTensorLeavesTheResidentSetAndReadsBackTheSame() {
        const auto f = io::safetensors_file::open(m_path);
        const auto& a = f->at("a");
        const auto& b = f->at("b");
        const double sa = sum_of(a), sb = sum_of(b); // touches every page of both tensors
        const long before = resident_kb_of_mapping(a.bytes.data());
        QVERIFY2(before >= 24 * 1024, qPrintable(QString("mapped resident %1 kB after reading").arg(before)));

        f->release_pages(a);
        const long after_a = resident_kb_of_mapping(a.bytes.data());
        // a's 16 MiB are gone; b stays (at most the page a and b share is dropped with a).
        QVERIFY2(after_a <= before - 16 * 1024 + 8,
                 qPrintable(QString("%1 -> %2 kB").arg(before).arg(after_a)));
        QVERIFY2(after_a >= 8 * 1024 - 8, qPrintable(QString("b's pages went too: %1 kB").arg(after_a)));

        QCOMPARE(sum_of(a), sa); // read again: same values
        QVERIFY(std::memcmp(a.to_f32().data(), m_a.data(), m_a.size() * sizeof(float)) == 0);

        f->release_pages();
        QVERIFY2(resident_kb_of_mapping(a.bytes.data()) <= 8,
                 qPrintable(QString("%1 kB left").arg(resident_kb_of_mapping(a.bytes.data()))));
        QCOMPARE(sum_of(b), sb);
        QVERIFY(std::memcmp(b.to_f32().data(), m_b.data(), m_b.size() * sizeof(float)) == 0);
    }

    void viewOutsideTheMappingIsIgnored() {
        const auto f = io::safetensors_file::open(m_path);
        // A heap buffer of whole pages, viewed as if it were a tensor of this file.
        std::vector<float> heap = ramp(std::size_t(1) << 20, 3.0f);
        const std::vector<float> copy = heap;
        io::tensor_view fake = f->at("a");
        fake.bytes = {reinterpret_cast<const std::byte*>(heap.data()), heap.size() * sizeof(float)};
        f->release_pages(fake);
        QVERIFY(std::memcmp(heap.data(), copy.data(), heap.size() * sizeof(float)) == 0);
        // A view that starts inside the mapping but runs past its end is ignored too.
        io::tensor_view overrun = f->at("b");
        overrun.bytes = {overrun.bytes.data(), overrun.bytes.size() + (std::size_t(64) << 20)};
        f->release_pages(overrun);
        QVERIFY(std::memcmp(heap.data(), copy.data(), heap.size() * sizeof(float)) == 0);
    }
};

QTEST_GUILESS_MAIN(TestSafetensorsPages)
#include "test_safetensors_pages.moc"
