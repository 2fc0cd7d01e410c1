// Request body inflation with zlib (see body_decoding.hpp).
#include "engine/http/body_decoding.hpp"

#include <zlib.h>

#include <algorithm>

namespace lorafleet::http {

coding parse_content_encoding(std::string_view value) {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
    std::string v(value);
    for (auto& c : v)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (v.empty() || v == "identity") return coding::identity;
    if (v == "gzip" || v == "x-gzip") return coding::gzip;
    if (v == "deflate") return coding::deflate;
    return coding::unsupported;
}

namespace {

// windowBits: 16 + 15 gzip, 15 zlib, -15 raw deflate.
decode_result inflate_with(const std::string& in, int window_bits, std::size_t max_bytes, std::string& out) {
    z_stream zs{};
    if (inflateInit2(&zs, window_bits) != Z_OK) return {500, "cannot start zlib"};
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    out.clear();
    char buf[64 * 1024];
    int rc = Z_OK;
    decode_result result;
    while (true) {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        const std::size_t produced = sizeof buf - zs.avail_out;
        if (out.size() + produced > max_bytes) {
            result = {413, "the request body inflates to more than this server accepts (" +
                               std::to_string(max_bytes) + " bytes)"};
            break;
        }
        out.append(buf, produced);
        if (rc == Z_STREAM_END) {
            if (zs.avail_in != 0) result = {400, "data after the end of the compressed body"};
            break;
        }
        if (rc != Z_OK) {
            result = {400, "the compressed request body is corrupt"};
            break;
        }
        if (zs.avail_in == 0 && produced == 0) {
            result = {400, "the compressed request body is truncated"};
            break;
        }
    }
    inflateEnd(&zs);
    return result;
}

} // namespace

decode_result decode_body(std::string& body, coding c, std::size_t max_bytes) {
    if (c == coding::identity) {
        if (body.size() > max_bytes) return {413, "the request body is larger than this server accepts"};
        return {};
    }
    if (c == coding::unsupported) return {415, "unsupported Content-Encoding"};
    if (body.size() > (std::size_t{1} << 31)) return {413, "the request body is too large to inflate"};
    std::string out;
    decode_result r;
    if (c == coding::gzip) {
        r = inflate_with(body, 16 + 15, max_bytes, out);
    } else {
        r = inflate_with(body, 15, max_bytes, out); // "deflate" means zlib-wrapped (RFC 9110 8.4.1.2)
        if (r.status == 400) r = inflate_with(body, -15, max_bytes, out); // ... but some clients send raw
    }
    if (r.status == 0) body = std::move(out);
    return r;
}

} // namespace lorafleet::http
