// The strict HTTP/1.1 request parser (see request_parser.hpp).
#include "engine/http/request_parser.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace lorafleet::http {

namespace {

bool is_tchar(unsigned char c) {
    if (c >= '0' && c <= '9') return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

std::string lowered(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        c = lower(c);
    return out;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// The comma-separated elements of a list-valued field, trimmed; empty elements kept (callers refuse them
// where they matter).
std::vector<std::string_view> list_elements(std::string_view v) {
    std::vector<std::string_view> out;
    while (true) {
        const auto comma = v.find(',');
        out.push_back(trim_ows(v.substr(0, comma)));
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
    }
    return out;
}

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

void request_parser::reset() {
    const parser_limits limits = m_limits;
    *this = request_parser(limits);
}

void request_parser::fail(int status, std::string message) {
    if (m_status == parse_status::failed) return;
    m_status = parse_status::failed;
    m_error_status = status;
    m_error = std::move(message);
}

// Appends bytes up to and including the next LF to m_line. True once a whole line is there (CRLF
// removed). A line over `cap` bytes fails with `over_status`; a bare LF or CR fails with 400.
bool request_parser::take_line(std::string_view data, std::size_t& used, std::size_t cap, int over_status,
                               const char* what) {
    const char* start = data.data() + used;
    const std::size_t avail = data.size() - used;
    const void* lf = std::memchr(start, '\n', avail);
    const std::size_t n = lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - start) + 1 : avail;
    if (m_line.size() + n > cap + 2) {
        fail(over_status,
             std::string(what) + " is longer than this server accepts (" + std::to_string(cap) + " bytes)");
        return false;
    }
    m_line.append(start, n);
    used += n;
    if (!lf) return false;
    if (m_line.size() < 2 || m_line[m_line.size() - 2] != '\r') {
        fail(400, "a line ends with a bare LF (HTTP needs CRLF)");
        return false;
    }
    m_line.resize(m_line.size() - 2);
    if (m_line.find('\r') != std::string::npos) {
        fail(400, "a bare CR inside a line");
        return false;
    }
    return true;
}

std::size_t request_parser::feed(std::string_view data) {
    std::size_t used = 0;
    while (used < data.size() && m_status == parse_status::need_more) {
        switch (m_phase) {
        case phase::request_line:
        case phase::header_line: {
            const std::size_t before = used;
            const bool first = m_phase == phase::request_line;
            const std::size_t cap = first ? m_limits.max_target_bytes + 64
                                          : std::min<std::size_t>(m_limits.max_head_bytes, 1 << 20);
            const bool line =
                take_line(data, used, cap, first ? 414 : 431, first ? "the request line" : "a header field");
            m_head_bytes += used - before;
            if (m_status == parse_status::failed) break;
            if (m_head_bytes > m_limits.max_head_bytes) {
                fail(first ? 414 : 431, "the request header section is larger than this server accepts (" +
                                            std::to_string(m_limits.max_head_bytes) + " bytes)");
                break;
            }
            if (!first || !m_line.empty()) m_started = true;
            if (!line) break;
            std::string l = std::move(m_line);
            m_line.clear();
            if (first) {
                if (l.empty()) {
                    if (m_head_bytes > 8) fail(400, "too many empty lines before the request line");
                    break; // RFC 9112 2.2: empty lines before a request are ignored
                }
                on_request_line(l);
            } else if (l.empty()) {
                on_head_end();
            } else {
                on_header_line(l);
            }
            break;
        }
        case phase::length_body: {
            const std::size_t n = static_cast<std::size_t>(
                std::min<std::uint64_t>(m_content_length - m_body.size(), data.size() - used));
            m_body.append(data.data() + used, n);
            used += n;
            if (m_body.size() == m_content_length) {
                m_phase = phase::done;
                m_status = parse_status::complete;
            }
            break;
        }
        case phase::chunk_size:
            if (take_line(data, used, 256, 400, "a chunk-size line")) {
                std::string l = std::move(m_line);
                m_line.clear();
                on_chunk_size(l);
            }
            break;
        case phase::chunk_data: {
            const std::size_t n =
                static_cast<std::size_t>(std::min<std::uint64_t>(m_chunk_left, data.size() - used));
            m_body.append(data.data() + used, n);
            used += n;
            m_chunk_left -= n;
            if (m_chunk_left == 0) m_phase = phase::chunk_end;
            break;
        }
        case phase::chunk_end:
            // Exactly CRLF after the chunk data.
            m_line.push_back(data[used++]);
            if (m_line.size() == 2) {
                if (m_line != "\r\n") fail(400, "chunk data is not followed by CRLF (bad chunk size?)");
                m_line.clear();
                m_phase = phase::chunk_size;
            } else if (m_line[0] != '\r') {
                fail(400, "chunk data is not followed by CRLF (bad chunk size?)");
            }
            break;
        case phase::trailer: {
            const std::size_t before = used;
            const bool line = take_line(data, used, m_limits.max_head_bytes, 431, "a trailer field");
            m_trailer_bytes += used - before;
            if (m_status == parse_status::failed) break;
            if (m_trailer_bytes > m_limits.max_head_bytes) {
                fail(431, "the trailer section is larger than this server accepts");
                break;
            }
            if (!line) break;
            std::string l = std::move(m_line);
            m_line.clear();
            if (l.empty()) {
                m_phase = phase::done;
                m_status = parse_status::complete;
            } else if (l[0] == ' ' || l[0] == '\t' || l.find(':') == std::string::npos || l.find(':') == 0 ||
                       !is_tchar(static_cast<unsigned char>(l[l.find(':') - 1]))) {
                fail(400, "a malformed trailer field");
            } // trailer fields are read and dropped: nothing here uses them
            break;
        }
        case phase::done:
            return used;
        }
    }
    return used;
}

void request_parser::on_request_line(const std::string& l) {
    const auto sp1 = l.find(' ');
    const auto sp2 = sp1 == std::string::npos ? std::string::npos : l.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos || l.find(' ', sp2 + 1) != std::string::npos)
        return fail(400, "the request line must be 'METHOD TARGET HTTP/1.1', with single spaces");
    const std::string_view method(l.data(), sp1);
    const std::string_view target(l.data() + sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version(l.data() + sp2 + 1, l.size() - sp2 - 1);
    if (method.empty() || method.size() > 32 || !std::all_of(method.begin(), method.end(), [](char c) {
            return is_tchar(static_cast<unsigned char>(c));
        }))
        return fail(400, "the request method is not a valid token");
    if (target.size() > m_limits.max_target_bytes)
        return fail(414, "the request target is longer than this server accepts (" +
                             std::to_string(m_limits.max_target_bytes) + " bytes)");
    if (target.empty() || !std::all_of(target.begin(), target.end(), [](char c) {
            return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
        }))
        return fail(400, "the request target has a character HTTP does not allow there");
    if (target[0] != '/' && !(target == "*" && method == "OPTIONS"))
        return fail(400, "the request target must be a path starting with '/'");
    if (version == "HTTP/1.1") {
        m_head.minor = 1;
    } else if (version == "HTTP/1.0") {
        m_head.minor = 0;
    } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" &&
               std::isdigit(static_cast<unsigned char>(version[5])) && version[6] == '.' &&
               std::isdigit(static_cast<unsigned char>(version[7]))) {
        return fail(505, "only HTTP/1.0 and HTTP/1.1 are served");
    } else {
        return fail(400, "the request line does not end with an HTTP version");
    }
    m_head.method = method;
    m_head.target = target;
    const auto q = target.find('?');
    m_head.path = target.substr(0, q);
    m_head.query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    m_phase = phase::header_line;
}

void request_parser::on_header_line(const std::string& l) {
    if (l[0] == ' ' || l[0] == '\t') return fail(400, "obsolete line folding in a header field");
    const auto colon = l.find(':');
    if (colon == std::string::npos || colon == 0) return fail(400, "a header field without a name and ':'");
    const std::string_view name(l.data(), colon);
    if (!std::all_of(name.begin(), name.end(),
                     [](char c) { return is_tchar(static_cast<unsigned char>(c)); }))
        return fail(400, "a header field name has a character HTTP does not allow (white space before ':'?)");
    const std::string_view value = trim_ows(std::string_view(l).substr(colon + 1));
    for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(400, "a header field value has a control character");
    }
    if (m_head.headers.size() >= m_limits.max_headers)
        return fail(431, "more header fields than this server accepts (" +
                             std::to_string(m_limits.max_headers) + ")");
    m_head.headers.emplace_back(lowered(name), std::string(value));
}

void request_parser::on_head_end() {
    int hosts = 0;
    bool has_length = false, has_te = false;
    std::string_view length;
    std::vector<std::string> codings;
    m_keep_alive = m_head.minor == 1;
    for (const auto& [name, value] : m_head.headers) {
        if (name == "host") {
            ++hosts;
        } else if (name == "content-length") {
            for (auto e : list_elements(value)) {
                if (!all_digits(e) || e.size() > 18) return fail(400, "Content-Length is not a valid number");
                if (has_length && e != length) return fail(400, "Content-Length fields that disagree");
                has_length = true;
                length = e;
            }
        } else if (name == "transfer-encoding") {
            has_te = true;
            for (auto e : list_elements(value))
                codings.push_back(lowered(e));
        } else if (name == "connection") {
            for (auto e : list_elements(value)) {
                const std::string t = lowered(e);
                if (t == "close") m_keep_alive = false;
                if (t == "keep-alive" && m_head.minor == 0) m_keep_alive = true;
            }
        } else if (name == "expect") {
            if (lowered(value) != "100-continue")
                return fail(417, "only 'Expect: 100-continue' is understood");
            m_expect_continue = true;
        }
    }
    // A Connection: close anywhere wins over keep-alive (checked in order above, so redo it).
    for (const auto& [name, value] : m_head.headers)
        if (name == "connection")
            for (auto e : list_elements(value))
                if (lowered(e) == "close") m_keep_alive = false;
    if (m_head.minor == 1 && hosts != 1)
        return fail(400,
                    hosts == 0 ? "an HTTP/1.1 request needs a Host header" : "more than one Host header");
    if (hosts > 1) return fail(400, "more than one Host header");
    if (has_te) {
        if (m_head.minor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
        if (has_length)
            return fail(400, "both Content-Length and Transfer-Encoding (refused: ambiguous framing)");
        for (const auto& c : codings)
            if (c.empty()) return fail(400, "an empty transfer coding");
        for (const auto& c : codings)
            if (c != "chunked")
                return fail(501, "the transfer coding '" + c.substr(0, 40) + "' is not supported");
        if (codings.size() != 1) return fail(400, "chunked applied more than once");
        m_chunked = true;
    } else if (has_length) {
        m_content_length = std::stoull(std::string(length));
        if (m_content_length > m_limits.max_body_bytes)
            return fail(413, "the request body is larger than this server accepts (" +
                                 std::to_string(m_limits.max_body_bytes) + " bytes)");
    } else if (m_head.method == "POST" || m_head.method == "PUT" || m_head.method == "PATCH") {
        return fail(411,
                    "a " + m_head.method + " request needs Content-Length (or chunked Transfer-Encoding)");
    }
    m_status = parse_status::head_done;
}

void request_parser::read_body() {
    if (m_status != parse_status::head_done) return;
    m_status = parse_status::need_more;
    if (m_chunked) {
        m_phase = phase::chunk_size;
    } else if (m_content_length > 0) {
        m_body.reserve(static_cast<std::size_t>(m_content_length));
        m_phase = phase::length_body;
    } else {
        m_phase = phase::done;
        m_status = parse_status::complete;
    }
}

void request_parser::on_chunk_size(const std::string& l) {
    std::size_t i = 0;
    std::uint64_t size = 0;
    while (i < l.size() && std::isxdigit(static_cast<unsigned char>(l[i]))) {
        if (i >= 15) return fail(400, "a chunk size with too many digits");
        const char c = lower(l[i]);
        size = size * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
        ++i;
    }
    if (i == 0) return fail(400, "a chunk-size line that does not start with a hex number");
    if (i < l.size()) {
        // Only chunk extensions may follow: BWS ';' ... (read and ignored).
        std::size_t j = i;
        while (j < l.size() && (l[j] == ' ' || l[j] == '\t'))
            ++j;
        if (j == l.size() || l[j] != ';') return fail(400, "junk after a chunk size");
        for (std::size_t k = j; k < l.size(); ++k) {
            const auto c = static_cast<unsigned char>(l[k]);
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return fail(400, "a control character in a chunk extension");
        }
    }
    if (size > m_limits.max_body_bytes || m_body.size() + size > m_limits.max_body_bytes)
        return fail(413, "the request body is larger than this server accepts (" +
                             std::to_string(m_limits.max_body_bytes) + " bytes)");
    if (size == 0) {
        m_phase = phase::trailer;
        return;
    }
    m_chunk_left = size;
    m_phase = phase::chunk_data;
}

} // namespace lorafleet::http
