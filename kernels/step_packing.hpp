// How a serving step's integers reach the device, and which steps a CUDA graph can replay (vLLM's
// per-batch-size graphs). A decode step of n tokens (one per sequence: every token is an output row, in
// order) is padded to the smallest bucket >= n of graph_buckets and replayed from the graph captured for
// that bucket; its integers are packed into one host array laid out for a fixed capacity and copied to the
// device in one async copy before the replay, so the captured kernels read them at fixed addresses.
// The padding contract (what makes padded rows harmless, tested in tests/kernels_host/test_step_packing):
// a padding token has token id 0, position 0, adapter slot -1 (base model), its own output row, and a
// block table of one entry, the SINK block: a KV block no sequence owns (the device allocates one beyond
// the cache's blocks). Its KV write lands in the sink and its attention reads only the sink, so no real
// token's cache, attention, adapter or logits row depends on a padding token; kernels never mix rows.
// Plain host C++ (no CUDA); pure functions: any thread.
#pragma once

namespace lorafleet::kernels {

constexpr int graph_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
constexpr int graph_bucket_count = int(sizeof(graph_buckets) / sizeof(graph_buckets[0]));
constexpr int graph_max_tokens = graph_buckets[graph_bucket_count - 1];

// Index of the smallest bucket holding n tokens, or -1 when n < 1 or n > graph_max_tokens.
inline int graph_bucket_index(int n) {
    if (n < 1) return -1;
    for (int i = 0; i < graph_bucket_count; ++i)
        if (n <= graph_buckets[i]) return i;
    return -1;
}

// A step a graph may replay: 1 <= n <= graph_max_tokens and out_rows == 0, 1, ..., n - 1 (each token is
// its sequence's last, i.e. one decode token per sequence).
inline bool graph_step_eligible(int n, const int* out_rows, int rows) {
    if (graph_bucket_index(n) < 0 || rows != n || !out_rows) return false;
    for (int i = 0; i < rows; ++i)
        if (out_rows[i] != i) return false;
    return true;
}

// Offsets (ints) of each array in the packed step for `capacity` tokens and `tables_capacity` table
// entries: tokens, positions, table offsets, output rows and adapter slots [capacity] each, then the
// concatenated block tables.
struct step_int_layout {
    int capacity = 0;
    int tables_capacity = 0;
    int tokens() const { return 0; }
    int positions() const { return capacity; }
    int table_offset() const { return 2 * capacity; }
    int out_rows() const { return 3 * capacity; }
    int adapter_slots() const { return 4 * capacity; }
    int tables() const { return 5 * capacity; }
    int total() const { return 5 * capacity + tables_capacity; }
};

// One step's integers in host memory (device_step's fields; token_slots may be null: every token base).
struct step_ints {
    int n = 0;
    const int* tokens = nullptr;
    const int* positions = nullptr;
    const int* table_offset = nullptr;
    const int* tables = nullptr;
    int tables_len = 0;
    const int* out_rows = nullptr;
    int rows = 0;
    const int* token_slots = nullptr;
};

// Packs `st` padded to `padded` tokens (and rows: padded == st.n for an unpadded step, where rows may be
// fewer than n) into out [L.total()]; padding tokens follow the contract above with the sink entry
// appended after the step's tables. False (out untouched) when padded < n, padding is asked of a step
// whose rows are not its tokens, or the step does not fit the layout.
inline bool pack_step(const step_ints& st, int padded, int sink_block, const step_int_layout& L, int* out) {
    const bool pad = padded > st.n;
    if (st.n < 1 || padded < st.n || padded > L.capacity || st.rows > L.capacity) return false;
    if (pad && st.rows != st.n) return false;
    if (st.tables_len + (pad ? 1 : 0) > L.tables_capacity) return false;
    for (int t = 0; t < padded; ++t) {
        const bool real = t < st.n;
        out[L.tokens() + t] = real ? st.tokens[t] : 0;
        out[L.positions() + t] = real ? st.positions[t] : 0;
        out[L.table_offset() + t] = real ? st.table_offset[t] : st.tables_len;
        out[L.adapter_slots() + t] = real && st.token_slots ? st.token_slots[t] : -1;
    }
    const int rows = pad ? padded : st.rows;
    for (int r = 0; r < rows; ++r)
        out[L.out_rows() + r] = r < st.rows ? st.out_rows[r] : r;
    for (int i = 0; i < st.tables_len; ++i)
        out[L.tables() + i] = st.tables[i];
    if (pad) out[L.tables() + st.tables_len] = sink_block;
    return true;
}

} // namespace lorafleet::kernels
