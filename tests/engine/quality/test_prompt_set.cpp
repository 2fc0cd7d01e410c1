// The evaluation prompt set (engine/quality/prompt_set.hpp), on the demo model's real tokenizer: one prompt
// per non-blank line with leading blanks dropped and CR LF accepted, the first `count` of them, each equal to
// the tokenizer's own encoding of that line (BOS added); a FIFO or a folder is refused at once (a FIFO with
// no writer would block a plain ifstream forever: the test would hang into its watchdog); a file of blank
// lines and a bad count are clear errors.
#include "engine/core/error.hpp"
#include "engine/quality/prompt_set.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/support/watchdog.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <sys/stat.h>

#include <fstream>

using namespace lorafleet;
namespace fs = std::filesystem;

class TestPromptSet : public QObject {
    Q_OBJECT

    std::unique_ptr<serve::Tokenizer> m_tok;

    static fs::path write(const QTemporaryDir& dir, const char* name, const std::string& text) {
        const fs::path p = fs::path(dir.path().toStdString()) / name;
        std::ofstream(p, std::ios::binary) << text;
        return p;
    }

private slots:
    void initTestCase() { m_tok = serve::load_tokenizer(test::demo_model_dir()); }

    void linesBlanksAndCount() {
        QTemporaryDir dir;
        const auto p = write(dir, "p.txt", "  Once upon a time\r\n\n\t\nThe cat sat\nA third line\n");
        const auto two = quality::read_prompt_set(p, 2, *m_tok);
        QCOMPARE(two.size(), std::size_t(2));
        QCOMPARE(two[0], m_tok->encode("Once upon a time", true));
        QCOMPARE(two[1], m_tok->encode("The cat sat", true));
        const auto all = quality::read_prompt_set(p, 100, *m_tok);
        QCOMPARE(all.size(), std::size_t(3));
        QCOMPARE(all[2], m_tok->encode("A third line", true));
    }

    void refusesWhatIsNotAPromptFile() {
        test::watchdog dog("prompt set: a FIFO must be refused, not read", std::chrono::seconds(30));
        QTemporaryDir dir;
        const fs::path fifo = fs::path(dir.path().toStdString()) / "fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        QVERIFY_THROWS_EXCEPTION(io_error, quality::read_prompt_set(fifo, 4, *m_tok));
        QVERIFY_THROWS_EXCEPTION(io_error, quality::read_prompt_set(dir.path().toStdString(), 4, *m_tok));
        QVERIFY_THROWS_EXCEPTION(
            validation_error, quality::read_prompt_set(write(dir, "blank.txt", "\n  \n\t\r\n"), 4, *m_tok));
        QVERIFY_THROWS_EXCEPTION(usage_error,
                                 quality::read_prompt_set(write(dir, "ok.txt", "hi\n"), 0, *m_tok));
    }
};

QTEST_GUILESS_MAIN(TestPromptSet)
#include "test_prompt_set.moc"
