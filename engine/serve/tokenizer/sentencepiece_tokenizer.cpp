// A SentencePiece `tokenizer.model` through libsentencepiece (encoding is the library's own). Decoding is
// done here piece by piece, because the library's Decode turns a character split across byte pieces
// into U+FFFD and so cannot stream; the rules are the library's: "▁" is a space, <0xXX> pieces are raw
// bytes, control pieces (BOS/EOS) produce nothing, unk produces " ⁇ ", and the text's first space is
// dropped when the model's decoder drops it (probed once on load, not assumed).
#include "engine/core/error.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "engine/serve/tokenizer/utf8.hpp"

#include <sentencepiece_processor.h>

namespace lorafleet::serve {
namespace {

constexpr std::string_view space_piece = "\xE2\x96\x81"; // U+2581

class SentencePieceTokenizer final : public Tokenizer {
public:
    SentencePieceTokenizer(const std::filesystem::path& path, special_tokens special)
        : m_where(path_string(path)) {
        // Read here (a regular file, bounded) rather than by the library, which would block on a FIFO.
        const std::string model = io::read_text_file(path, io::max_tokenizer_file_bytes, "tokenizer.model");
        const auto status = m_sp.LoadFromSerializedProto(model);
        if (!status.ok()) throw format_error(m_where, "not a SentencePiece model: " + status.ToString());
        m_byte.assign(std::size_t(m_sp.GetPieceSize()), -1);
        for (int id = 0; id < m_sp.GetPieceSize(); ++id)
            if (m_sp.IsByte(id)) {
                const std::string& p = m_sp.IdToPiece(id); // "<0xAB>"
                m_byte[std::size_t(id)] = static_cast<int>(std::stoul(p.substr(3, 2), nullptr, 16));
            }
        // Does the library drop the leading space of a text? Ask it with any piece that starts with "▁".
        for (int id = 0; id < m_sp.GetPieceSize(); ++id) {
            const std::string& p = m_sp.IdToPiece(id);
            if (m_sp.IsControl(id) || m_sp.IsUnknown(id) || m_sp.IsByte(id) ||
                p.size() <= space_piece.size() || p.compare(0, space_piece.size(), space_piece) != 0)
                continue;
            m_drop_first_space = m_sp.DecodeIds({id}).compare(0, 1, " ") != 0;
            break;
        }
        set_special(std::move(special), m_sp.bos_id(), m_sp.eos_id());
    }

    std::vector<int> encode(std::string_view text, bool add_special) const override {
        std::vector<int> ids;
        if (add_special && m_special.add_bos.value_or(true) && m_special.bos >= 0)
            ids.push_back(m_special.bos);
        if (!text.empty()) {
            std::vector<int> body;
            const auto status = m_sp.Encode(text, &body);
            if (!status.ok()) throw validation_error(m_where, "cannot encode: " + status.ToString());
            ids.insert(ids.end(), body.begin(), body.end());
        }
        if (add_special && m_special.add_eos.value_or(false) && !m_special.eos.empty())
            ids.push_back(m_special.eos[0]);
        return ids;
    }

    std::string decode_bytes(std::span<const int> ids, bool at_text_start, bool skip_special) const override {
        std::string out;
        bool first = at_text_start;
        for (int id : ids) {
            if (id < 0 || id >= vocab_size())
                throw usage_error(m_where, "token id " + std::to_string(id) + " is outside the vocabulary");
            if (m_sp.IsControl(id) || (skip_special && is_special(id))) continue;
            std::string piece;
            if (m_byte[std::size_t(id)] >= 0) {
                piece.assign(1, static_cast<char>(m_byte[std::size_t(id)]));
            } else if (m_sp.IsUnknown(id)) {
                piece = " \xE2\x81\x87 "; // " ⁇ ", the library's default unk surface
            } else {
                const std::string& p = m_sp.IdToPiece(id);
                for (std::size_t i = 0; i < p.size();) {
                    if (p.compare(i, space_piece.size(), space_piece) == 0) {
                        piece += ' ';
                        i += space_piece.size();
                    } else {
                        piece += p[i++];
                    }
                }
                if (first && m_drop_first_space && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
            }
            first = false;
            out += piece;
        }
        return out;
    }

    int vocab_size() const override { return m_sp.GetPieceSize(); }
    std::string token_text(int id) const override { return m_sp.IdToPiece(id); }
    std::optional<int> token_id(std::string_view text) const override {
        const int id = m_sp.PieceToId(text);
        // PieceToId answers unk for unknown pieces: only accept unk when it was asked for.
        if (id < 0 || (m_sp.IsUnknown(id) && m_sp.IdToPiece(id) != text)) return std::nullopt;
        return id;
    }
    bool is_special(int id) const override {
        return id >= 0 && id < vocab_size() && (m_sp.IsControl(id) || m_sp.IsUnknown(id));
    }

private:
    std::string m_where;
    sentencepiece::SentencePieceProcessor m_sp;
    std::vector<int> m_byte; // [vocab] byte value of <0xXX> pieces, -1 for others
    bool m_drop_first_space = true;
};

} // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path,
                                                        special_tokens special) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) throw io_error(path_string(path), "no such file");
    return std::make_unique<SentencePieceTokenizer>(path, std::move(special));
}

} // namespace lorafleet::serve
