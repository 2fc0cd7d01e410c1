#!/usr/bin/env python3
"""Dev-time generator of the byte-level BPE test material in this folder (the build and the tests never
run it; they read what it wrote). HuggingFace `tokenizers` (the Rust library, PyPI 0.23.3 when these
files were made) is the independent reference for engine/serve's byte-level BPE:

  byte_level_llama3.json  trained here: Split(Llama 3 regex, Isolated) + ByteLevel(use_regex false),
                          ignore_merges, <|begin_of_text|> template, special tokens after the vocabulary,
                          whose last word is one no merge reaches (" Shakespeare"): only ignore_merges makes
                          it one token
  byte_level_gpt2.json    trained here: ByteLevel(add_prefix_space false, use_regex true), <|endoftext|>
  byte_level_gpt2_prefix.json  the GPT-2 file with add_prefix_space true
  byte_level_qwen2.json   the Llama 3 vocabulary re-dressed as Qwen2 ships it: NFC normalizer, Qwen2
                          regex (single digits), no ignore_merges, merges as "a b" strings, no BOS
  byte_level_reference.json  {"suites": [{"tokenizer", "cases": [{text, ids, decoded, decoded_all}]}],
                          "splits": [{"pattern", "cases": [{text, pieces}]}]}:
                          ids = encode(text, add_special_tokens=True), decoded = decode(ids) skipping
                          special tokens, decoded_all = decode(ids) keeping them; pieces = the pre-tokens
                          of Split(Regex(pattern), "isolated") alone (raw text, before the byte mapping),
                          for the three regexes the engine recognises (GPT-2's is ByteLevel's built-in one)

Usage: python3 make_byte_level.py   (needs `pip install tokenizers==0.23.3`; writes next to itself)
"""
import json
import pathlib

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE.parents[2] / "resources" / "prompts" / "sonnets.txt"

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CASES = [
    "",
    "Shall I compare thee to a summer's day?",
    "From fairest creatures we desire increase,\nThat thereby beauty's rose might never die,",
    "I'll go, he's here, THEY'RE sure, it'S odd, We'VE won, I'M in, you'D see, 'll 'LL 'Ll",
    "1234567 and 12 and 3.14159, year 1609, 00001",
    "a  b   c\t\td\n\ne  \n  f   ",
    "\n\n\nleading newlines and trailing\n\n",
    "   ",
    " ",
    "\r\nwindows\r\nline endings \r\n\r\n end",
    "Hello!!! ... ?!?! --- (((x))) \"quoted\" ;; \t!\n",
    "Caf\u00e9 na\u00efve fa\u00e7ade \u00c6r\u00f8 S\u00e3o Paulo Z\u00fcrich",
    "cafe\u0301 and nai\u0308ve (decomposed)",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",
    "Love \U0001F600 and \U0001F44D\U0001F3FD and \U0001F468\u200d\U0001F469\u200d\U0001F467 family \U0001F389!",
    "\U0001F600\U0001F600\U0001F600",
    "a\u00a0b\u3000c\u2028d\u0085e \u2003 f",
    "it'\u017f and IT'\u017f",
    "\u216b \u00bd \u00b2\u00b3 \u0663\u0664\u0665 x\u00b2",
    "Supercalifragilisticexpialidocious" * 3 + " thy" * 20,
    "  Pity the world, or else this glutton be,\n  To eat the world's due, by the grave and thee.\n",
]
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Extra texts for the pre-token splits alone: case folding (long s folds to s), Unicode white space
# (NEL, NBSP, line separator), combining marks, titlecase letters, digit runs, runs of newlines.
SPLIT_CASES = [
    "it'\u017f\u017f IT'\u017f", "\u212a'K", "don't DON'T don'T", "'re're 'v 'VE 'Ll'lL",
    "a \n\n  b", "x  \t\n y", "a \u0085 b \u00a0\u00a0c", "x\u2028\u2028 y", "!!\n\n\n x", "?? \r\n\r\n",
    "\u01c5a \u01c5", "a\u0301b \u0301", "12345678901", " 1 22 333 4444 55555", "x1y22z", "\t\tx\t",
    "end  ", "end \n", "\n", "'", "' s", "\U0001F600\U0001F600 \U0001F600x", "a\u0085\u0085b",
]
SPECIAL_CASES = {
    "llama3": ["<|begin_of_text|>Hi<|eot_id|>there", "a<|eot_id|>\n\n<|start_header_id|>user<|end_header_id|>",
               "William Shakespeare, Shakespeare's"],
    "gpt2": ["one<|endoftext|>two", "<|endoftext|>"],
    "gpt2_prefix": ["one<|endoftext|>two", "<|endoftext|> after"],
    "qwen2": ["<|im_start|>user\nHi<|im_end|>\n", "<|endoftext|>", "William Shakespeare, Shakespeare's"],
}


def train(pre_tokenizer, ignore_merges, special, unmerged_word=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train([str(CORPUS)], trainer)
    if unmerged_word:
        j = json.loads(tok.to_str())
        j["model"]["vocab"][unmerged_word] = len(j["model"]["vocab"])
        tok = Tokenizer.from_str(json.dumps(j))
    tok.add_special_tokens(special)  # after the vocabulary, as Llama 3 and Qwen2 number them
    return tok


def llama3():
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = train(pre, True, special, unmerged_word="\u0120Shakespeare")
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    return tok


def gpt2():
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False, ["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def edited(tok, edit):
    j = json.loads(tok.to_str())
    edit(j)
    return Tokenizer.from_str(json.dumps(j)), j


def gpt2_prefix(j):
    j["pre_tokenizer"]["add_prefix_space"] = True


def qwen2(j):
    j["normalizer"] = {"type": "NFC"}
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = QWEN2_PATTERN
    j["model"]["ignore_merges"] = False
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    # Qwen2's own special tokens instead of Llama 3's (same ids, so the vocabulary stays as trained).
    for t, name in zip(j["added_tokens"], ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                                          "<|object_ref_end|>"]):
        t["content"] = name


def main():
    base_llama = llama3()
    base_gpt2 = gpt2()
    made = {
        "llama3": (base_llama, json.loads(base_llama.to_str())),
        "gpt2": (base_gpt2, json.loads(base_gpt2.to_str())),
        "gpt2_prefix": edited(base_gpt2, gpt2_prefix),
        "qwen2": edited(base_llama, qwen2),
    }
    suites = []
    for name, (tok, j) in made.items():
        path = HERE / f"byte_level_{name}.json"
        path.write_text(json.dumps(j, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n",
                        encoding="utf-8")
        cases = []
        for text in CASES + SPECIAL_CASES[name]:
            ids = tok.encode(text, add_special_tokens=True).ids
            cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True),
                          "decoded_all": tok.decode(ids, skip_special_tokens=False)})
        suites.append({"tokenizer": path.name, "cases": cases})
    splits = []
    for pattern in (GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN):
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
        splits.append({"pattern": pattern, "cases": [{"text": t, "pieces": [p for p, _ in split.pre_tokenize_str(t)]}
                                                     for t in CASES + SPLIT_CASES]})
    ref = {"generator": "make_byte_level.py", "tokenizers_version": tokenizers.__version__, "suites": suites,
           "splits": splits}
    (HERE / "byte_level_reference.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n",
                                                     encoding="utf-8")


if __name__ == "__main__":
    main()
