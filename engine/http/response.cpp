// Response serialization (see response.hpp).
#include "engine/http/response.hpp"

#include <cstdio>
#include <ctime>

namespace lorafleet::http {

std::string_view reason_phrase(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

std::string serialize_head(int status, std::string_view content_type, const header_list& headers,
                           long long body_length, bool keep_alive, int minor) {
    std::string out;
    out.reserve(256);
    out += minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += reason_phrase(status);
    out += "\r\n";
    char date[64];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    if (std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0) {
        out += "Date: ";
        out += date;
        out += "\r\n";
    }
    out += "Server: lorafleet\r\n";
    if (!content_type.empty()) {
        out += "Content-Type: ";
        out += content_type;
        out += "\r\n";
    }
    if (body_length >= 0) {
        out += "Content-Length: " + std::to_string(body_length) + "\r\n";
    } else if (minor == 1) {
        out += "Transfer-Encoding: chunked\r\n";
    }
    for (const auto& [name, value] : headers)
        out += name + ": " + value + "\r\n";
    if (!keep_alive)
        out += "Connection: close\r\n";
    else if (minor == 0)
        out += "Connection: keep-alive\r\n";
    out += "\r\n";
    return out;
}

std::string serialize(const response& r, bool keep_alive, int minor) {
    std::string out = serialize_head(r.status, r.content_type, r.headers,
                                     static_cast<long long>(r.body.size()), keep_alive, minor);
    out += r.body;
    return out;
}

std::string chunk(std::string_view data) {
    if (data.empty()) return {};
    char size[24];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    std::string out(size);
    out += data;
    out += "\r\n";
    return out;
}

std::string_view last_chunk() {
    return "0\r\n\r\n";
}

} // namespace lorafleet::http
