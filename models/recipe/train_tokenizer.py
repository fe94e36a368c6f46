#!/usr/bin/env python3
"""Byte-level BPE tokenizer: trainer, encoder, and HF tokenizer.json exporter.
No external libraries (uses the `regex` module for the GPT-2 pre-tokenizer if it is
importable, otherwise an equivalent hand-written scanner).

    python3 train_tokenizer.py TRAIN_TXT OUT_MODEL_DIR [--vocab 4096]

Token ids: 0 <|endoftext|> (bos/eos/pad), 1 <|im_start|>, 2 <|im_end|>,
3..258 the 256 byte tokens (byte value 0..255, GPT-2 bytes_to_unicode strings),
then merged tokens in merge order. Total vocabulary: exactly --vocab entries.
"""
import heapq
import json
import os
import sys
import unicodedata
from collections import Counter

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENC = bytes_to_unicode()
BYTE_DEC = {c: b for b, c in BYTE_ENC.items()}

# ---------------------------------------------------------------- pre-tokenizer
try:
    import regex as _regex  # type: ignore

    _PAT = _regex.compile(GPT2_PATTERN)

    def pretokenize(text):
        return _PAT.findall(text)

except ImportError:  # hand-written scanner, equivalent to GPT2_PATTERN

    def _is_space(c):
        # Oniguruma/Unicode \s: \t \n \v \f \r, space, NEL, and Z* separators
        return c in "\t\n\x0b\x0c\r \x85" or unicodedata.category(c) in ("Zs", "Zl", "Zp")

    def _is_letter(c):
        return unicodedata.category(c)[0] == "L"

    def _is_number(c):
        return unicodedata.category(c)[0] == "N"

    def _is_other(c):
        return not (_is_space(c) or _is_letter(c) or _is_number(c))

    _CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

    def pretokenize(text):
        out = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            # 1. contractions (alternation order: first listed that matches wins)
            if c == "'":
                m = None
                for con in _CONTRACTIONS:
                    if text.startswith(con, i):
                        m = con
                        break
                if m:
                    out.append(m)
                    i += len(m)
                    continue
            # 2-4. optional single space + run of one class
            j = i + 1 if (c == " " and i + 1 < n) else i
            matched = False
            for cls in (_is_letter, _is_number, _is_other):
                if j < n and cls(text[j]):
                    k = j + 1
                    while k < n and cls(text[k]):
                        k += 1
                    out.append(text[i:k])
                    i = k
                    matched = True
                    break
            if matched:
                continue
            # 5. \s+(?!\S)  6. \s+
            if _is_space(c):
                k = i + 1
                while k < n and _is_space(text[k]):
                    k += 1
                if k == n or k - 1 == i:
                    out.append(text[i:k])  # to end of text, or a single space before non-space (rule 6)
                    i = k
                else:
                    out.append(text[i:k - 1])  # leave the last space for the next token
                    i = k - 1
                continue
            raise AssertionError("unreachable")  # every char is space, L, N or other
        return out


# ---------------------------------------------------------------- training
def train(text, vocab_size, log=print):
    word_counts = Counter(pretokenize(text))
    log(f"pre-tokens: {sum(word_counts.values())} total, {len(word_counts)} distinct")
    id_to_str = list(SPECIALS) + [BYTE_ENC[b] for b in range(256)]
    str_to_id = {s: i for i, s in enumerate(id_to_str)}
    words, freqs = [], []
    for w, c in word_counts.items():
        words.append([3 + b for b in w.encode("utf-8")])
        freqs.append(c)

    pair_counts = Counter()
    where = {}
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            pair_counts[p] += f
            where.setdefault(p, set()).add(wi)

    # max-heap with lazy invalidation; ties broken by smaller (id_a, id_b)
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(id_to_str) < vocab_size:
        while heap:
            negc, p = heapq.heappop(heap)
            if pair_counts.get(p, 0) == -negc and negc < 0:
                break
        else:
            raise RuntimeError("ran out of pairs")
        a, b = p
        s = id_to_str[a] + id_to_str[b]
        if s in str_to_id:  # same string reachable by another split: reuse the id
            new = str_to_id[s]
        else:
            new = len(id_to_str)
            id_to_str.append(s)
            str_to_id[s] = new
        merges.append((a, b))
        changed = set()
        for wi in list(where.get(p, ())):
            w, f = words[wi], freqs[wi]
            nw, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    nw.append(new)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            old_pairs = list(zip(w, w[1:]))
            new_pairs = list(zip(nw, nw[1:]))
            for q in old_pairs:
                pair_counts[q] -= f
                changed.add(q)
            for q in new_pairs:
                pair_counts[q] += f
                changed.add(q)
            for q in set(old_pairs) - set(new_pairs):
                where[q].discard(wi)
            for q in set(new_pairs):
                where.setdefault(q, set()).add(wi)
            words[wi] = nw
        for q in changed:
            c = pair_counts[q]
            if c > 0:
                heapq.heappush(heap, (-c, q))
            else:
                pair_counts.pop(q, None)
        if len(merges) % 500 == 0:
            log(f"merge {len(merges)}: {s!r} count={-negc} vocab={len(id_to_str)}")
    return id_to_str, [(id_to_str[a], id_to_str[b]) for a, b in merges]


# ---------------------------------------------------------------- encoder
class BPETokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab  # str -> id
        self.id_to_str = {i: s for s, i in vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.cache = {}
        self.bos_id = vocab["<|endoftext|>"]

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        vocab = dict(tj["model"]["vocab"])
        for t in tj["added_tokens"]:
            vocab[t["content"]] = t["id"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tj["model"]["merges"]]
        return cls(vocab, merges)

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            a, b = parts[best], parts[best + 1]
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text, add_bos=True):
        """Plain text (special-token strings are NOT recognised here)."""
        ids = [self.bos_id] if add_bos else []
        for w in pretokenize(text):
            ids.extend(self._bpe("".join(BYTE_ENC[b] for b in w.encode("utf-8"))))
        return ids

    def decode(self, ids, skip_special=True):
        out = bytearray()
        for i in ids:
            s = self.id_to_str[i]
            if s in SPECIALS:
                if not skip_special:
                    out += s.encode("utf-8")
                continue
            out += bytes(BYTE_DEC[c] for c in s)
        return out.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- export
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def export(id_to_str, merges, outdir, max_len=512):
    os.makedirs(outdir, exist_ok=True)
    vocab = {s: i for i, s in enumerate(id_to_str) if i >= len(SPECIALS)}
    added = [
        {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, s in enumerate(SPECIALS)
    ]
    bos = SPECIALS[0]
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [0], "tokens": [bos]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    with open(os.path.join(outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added},
        "bos_token": bos,
        "eos_token": bos,
        "pad_token": bos,
        "unk_token": None,
        "additional_special_tokens": SPECIALS[1:],
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
    stm = {"bos_token": bos, "eos_token": bos, "pad_token": bos, "additional_special_tokens": SPECIALS[1:]}
    with open(os.path.join(outdir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(stm, f, indent=1)


def main():
    args = sys.argv[1:]
    vocab_size = 4096
    if "--vocab" in args:
        k = args.index("--vocab")
        vocab_size = int(args[k + 1])
        del args[k:k + 2]
    if len(args) != 2:
        sys.exit("usage: train_tokenizer.py TRAIN_TXT OUT_MODEL_DIR [--vocab 4096]")
    with open(args[0], encoding="utf-8") as f:
        text = f.read()
    id_to_str, merges = train(text, vocab_size)
    assert len(id_to_str) == vocab_size
    export(id_to_str, merges, args[1])
    print(f"vocab {len(id_to_str)}, merges {len(merges)} -> {args[1]}/tokenizer.json")


if __name__ == "__main__":
    main()
