// A small blocking HTTP/1.1 client over POSIX sockets, for tests: one connection at a time, keep-alive
// (reconnecting after a response that said Connection: close), Content-Length and chunked responses, a
// callback for streamed bodies, and raw access (send any bytes, read responses one by one) for the
// protocol tests. Every wait is bounded by the timeout given. Not thread-safe (one per thread).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lorafleet::test {

struct http_reply {
    int status = -1;                            // -1: transport error (body says which)
    std::map<std::string, std::string> headers; // lower-case names
    std::string body;
    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

using header_pairs = std::vector<std::pair<std::string, std::string>>;

// One TCP connection to 127.0.0.1:port.
class http_connection {
public:
    explicit http_connection(int port, int timeout_ms = 60000);
    ~http_connection();
    http_connection(const http_connection&) = delete;
    http_connection& operator=(const http_connection&) = delete;

    bool connected() const { return m_fd >= 0; }
    int fd() const { return m_fd; }
    void set_receive_buffer(int bytes); // before reading: a small one makes the server's writes block
    bool send(std::string_view bytes);  // false when the connection failed
    // Reads one response. on_data (optional) gets the body's pieces as they arrive (decoded from chunks);
    // returning false hangs up. The reply's body holds the whole body either way.
    http_reply read_response(const std::function<bool(std::string_view)>& on_data = {});
    // Whether the server closed the connection (EOF) within timeout_ms, with nothing more to read.
    bool closed_by_server(int timeout_ms);
    const std::string& buffered() const { return m_buf; } // received, not yet read as a response
    void close();

private:
    bool fill(); // reads more into m_buf; false on EOF / error / timeout
    int m_fd = -1;
    int m_timeout_ms;
    std::string m_buf;
    std::string m_error;
};

// Requests over a kept-alive connection, reconnecting when needed.
class http_client {
public:
    explicit http_client(int port, int timeout_ms = 120000) : m_port(port), m_timeout_ms(timeout_ms) {}
    http_reply request(const std::string& method, const std::string& path, const std::string& body = {},
                       const header_pairs& headers = {},
                       const std::function<bool(std::string_view)>& on_data = {});
    http_reply get(const std::string& path, const header_pairs& headers = {}) {
        return request("GET", path, {}, headers);
    }
    http_reply post(const std::string& path, const std::string& body, const header_pairs& headers = {}) {
        return request("POST", path, body, headers);
    }
    http_reply del(const std::string& path, const header_pairs& headers = {}) {
        return request("DELETE", path, {}, headers);
    }
    void close() { m_conn.reset(); }

private:
    int m_port;
    int m_timeout_ms;
    std::unique_ptr<http_connection> m_conn;
};

// "POST /path HTTP/1.1" with Host, Content-Type application/json and Content-Length, plus `headers`.
std::string format_request(const std::string& method, const std::string& path, const std::string& body,
                           const header_pairs& headers = {});

} // namespace lorafleet::test
