// The bundled-resource lookup (engine/io/bundled_resources.hpp) over fake layouts in a temporary
// folder: the LORAFLEET_RESOURCES override wins over everything, an installed PREFIX/share/lorafleet is
// found from PREFIX/bin, a build tree inside a checkout finds resources/ above it, an out-of-tree build
// falls back to the configured source dir, and when nothing holds the file the message names every
// place that was searched. Also the real process: this test binary finds the checkout's demo model.
#include "engine/io/bundled_resources.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cstdlib>
#include <fstream>

namespace fs = std::filesystem;
using namespace lorafleet;

namespace {

void touch(const fs::path& file) {
    fs::create_directories(file.parent_path());
    std::ofstream(file) << "{}\n";
}

const fs::path kModel = fs::path(io::demo_model_relative) / "config.json";

} // namespace

class TestBundledResources : public QObject {
    Q_OBJECT
private slots:
    void overrideWins() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        touch(root / "override" / kModel);
        touch(root / "prefix/share/lorafleet" / kModel);
        io::lookup_places places;
        places.override_dir = root / "override";
        places.executable = root / "prefix/bin/lorafleet";
        const auto r = io::find_resource(kModel, places);
        QVERIFY(r.path);
        QCOMPARE(QString::fromStdString(r.path->string()),
                 QString::fromStdString((root / "override" / kModel).string()));
        QCOMPARE(r.searched.size(), std::size_t(1));
    }

    void installedLayoutBuildTreeAndSourceTree() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        // Installed: PREFIX/bin/lorafleet -> PREFIX/share/lorafleet.
        touch(root / "prefix/share/lorafleet" / io::sonnets_relative);
        io::lookup_places installed;
        installed.executable = root / "prefix/bin/lorafleet";
        QVERIFY(io::find_resource(io::sonnets_relative, installed).path);
        // A build tree inside a checkout: checkout/build/app/lorafleet -> checkout/resources.
        touch(root / "checkout/resources" / kModel);
        io::lookup_places inTree;
        inTree.executable = root / "checkout/build/app/lorafleet";
        const auto r = io::find_resource(kModel, inTree);
        QVERIFY(r.path);
        QVERIFY(r.path->string().find("checkout/resources") != std::string::npos);
        // Out of tree: /elsewhere/build/app/lorafleet with the configured source dir.
        io::lookup_places outOfTree;
        outOfTree.executable = root / "elsewhere/build/app/lorafleet";
        outOfTree.source_dir = root / "checkout";
        const auto o = io::find_resource(kModel, outOfTree);
        QVERIFY(o.path);
        QCOMPARE(o.searched.back(), (root / "checkout/resources").lexically_normal());
    }

    void missingNamesEveryPlace() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        io::lookup_places places;
        places.override_dir = root / "nothing-here";
        places.executable = root / "prefix/bin/lorafleet";
        places.source_dir = root / "src";
        const auto r = io::find_resource(kModel, places);
        QVERIFY(!r.path);
        QVERIFY(r.searched.size() >= 4);
        const std::string message = io::not_found_message("The demo model", kModel, r);
        for (const fs::path& searched : r.searched)
            QVERIFY2(message.find((searched / kModel).string()) != std::string::npos, message.c_str());
        QVERIFY(message.find((root / "nothing-here").string()) != std::string::npos);
        QVERIFY(message.find((root / "prefix/share/lorafleet").string()) != std::string::npos);
        QVERIFY(message.find((root / "src/resources").string()) != std::string::npos);
        QVERIFY(message.find("LORAFLEET_RESOURCES") != std::string::npos);
    }

    // The user guide: the installed doc copy first, else the checkout's README.md.
    void userGuide() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        touch(root / "prefix/share/doc/LoRAFleet/README.md");
        io::lookup_places installed;
        installed.executable = root / "prefix/bin/lorafleet";
        const auto i = io::find_user_guide(installed);
        QVERIFY(i.path);
        QCOMPARE(*i.path, (root / "prefix/share/doc/LoRAFleet/README.md").lexically_normal());
        touch(root / "checkout/README.md");
        fs::create_directories(root / "checkout/resources");
        io::lookup_places inTree;
        inTree.executable = root / "checkout/build/app/lorafleet";
        const auto t = io::find_user_guide(inTree);
        QVERIFY(t.path);
        QCOMPARE(*t.path, (root / "checkout/README.md").lexically_normal());
        io::lookup_places nowhere;
        nowhere.executable = root / "elsewhere/bin/lorafleet";
        const auto n = io::find_user_guide(nowhere);
        QVERIFY(!n.path);
        QCOMPARE(n.searched.size(), std::size_t(2));
    }

    // The running process: the environment override is honoured by find_demo_model, and without it the
    // checkout this test was built from has the model.
    void thisProcess() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        touch(root / kModel);
        qputenv("LORAFLEET_RESOURCES", QByteArray::fromStdString(root.string()));
        const auto overridden = io::find_demo_model();
        QVERIFY(overridden);
        QCOMPARE(*overridden, (root / io::demo_model_relative).lexically_normal());
        qunsetenv("LORAFLEET_RESOURCES");
        const auto found = io::find_demo_model();
        QVERIFY(found);
        QVERIFY(fs::exists(*found / "model.safetensors"));
    }
};

QTEST_GUILESS_MAIN(TestBundledResources)
#include "test_bundled_resources.moc"
