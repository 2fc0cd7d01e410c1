// cuBLAS / cuSOLVER are loaded on first use (kernels/cuda_libraries.hpp), never at program start:
//  - a process that probes for devices and finds none has no cuBLAS mapped (read from /proc/self/maps;
//    linked the usual way, the CUDA build mapped it, ~260 MB resident, before main even ran); where a
//    device exists, cuBLAS is mapped exactly when the probe loaded the libraries;
//  - in a fresh process (this binary run again) the toolkit's libraries load from the default search and
//    a forwarded entry point reaches the real cuBLAS (cublasGetStatusString's own texts);
//  - LORAFLEET_CUDA_LIBDIR pointing at a folder without them: not loaded, and the reason names the
//    missing library and the folder; still nothing mapped. (A build without CUDA says "no CUDA backend".)
#include "kernels/cuda_libraries.hpp"
#include "kernels/device_probe.hpp"
#include "kernels/linalg_device.hpp"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <fstream>
#include <string>

#ifdef LORAFLEET_WITH_CUDA
#include <cublas_api.h>
#endif

namespace k = lorafleet::kernels;

namespace {

bool cublas_mapped() {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line))
        if (line.find("libcublas") != std::string::npos) return true;
    return false;
}

} // namespace

class TestCudaLibraries : public QObject {
    Q_OBJECT
private slots:
    void mathLibrariesAreMappedOnlyWhenLoaded() {
        if (!std::ifstream("/proc/self/maps")) QSKIP("no /proc/self/maps here");
        QVERIFY2(!cublas_mapped(), "cuBLAS is mapped before anything asked for it");
        const k::cuda_probe_result probe = k::probe_cuda_devices();
        if (probe.devices.empty())
            QVERIFY2(!cublas_mapped(), "probing a machine without a device mapped cuBLAS");
        else
            QCOMPARE(cublas_mapped(), k::cuda_math_libraries().loaded);
    }

    void toolkitLibrariesLoadInAFreshProcess() {
#ifndef LORAFLEET_WITH_CUDA
        QSKIP("this build has no CUDA backend");
#else
        if (qEnvironmentVariableIsSet("LORAFLEET_TEST_CHILD")) { // the fresh process: nothing loaded yet
            const auto& status = k::cuda_math_libraries();
            QVERIFY2(status.loaded, status.reason.c_str());
            QVERIFY(cublas_mapped());
            // The real library's texts: one per status, none of them the loader's "not loaded" message.
            const QString ok = cublasGetStatusString(CUBLAS_STATUS_SUCCESS);
            const QString uninit = cublasGetStatusString(CUBLAS_STATUS_NOT_INITIALIZED);
            QVERIFY(!ok.isEmpty() && !uninit.isEmpty() && ok != uninit);
            QVERIFY2(!uninit.contains("not loaded"), qPrintable(uninit));
            return;
        }
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("LORAFLEET_TEST_CHILD", "1");
        env.remove("LORAFLEET_CUDA_LIBDIR");
        QProcess child;
        child.setProcessEnvironment(env);
        child.setProcessChannelMode(QProcess::MergedChannels);
        child.start(QCoreApplication::applicationFilePath(), {"toolkitLibrariesLoadInAFreshProcess"});
        QVERIFY(child.waitForFinished(60000));
        QVERIFY2(child.exitCode() == 0, child.readAll().constData());
#endif
    }

    void aFolderWithoutTheLibrariesGivesAClearReason() {
        if (!k::linalg_compiled()) {
            QVERIFY(!k::cuda_math_libraries().loaded);
            QVERIFY(QString::fromStdString(k::cuda_math_libraries().reason).contains("no CUDA backend"));
            return;
        }
        if (cublas_mapped()) QSKIP("the libraries were loaded already (a device here); they load once");
        QTemporaryDir empty;
        QVERIFY(empty.isValid());
        qputenv("LORAFLEET_CUDA_LIBDIR", empty.path().toUtf8());
        const auto& status = k::cuda_math_libraries();
        QVERIFY(!status.loaded);
        const QString reason = QString::fromStdString(status.reason);
        QVERIFY2(reason.contains("libcublas.so.") && reason.contains(empty.path()), qPrintable(reason));
        QVERIFY(!cublas_mapped());
    }
};

QTEST_GUILESS_MAIN(TestCudaLibraries)
#include "test_cuda_libraries.moc"
