#!/usr/bin/env python3
"""Held-out evaluation of the BF16 model (weights read back from model.safetensors and
computed in f32).

    python3 evaluate.py MODEL_DIR TRAIN_TXT [EVAL_TXT]

EVAL_TXT defaults to MODEL_DIR/data/eval.txt. The whole file is tokenized once
(BOS <|endoftext|> once at the start), then cut into non-overlapping 512-token
windows (the incomplete tail is dropped):

  gptq      : each window as is; every position except the last predicts the next
              token -> 511 scored tokens per window; ppl = exp(mean NLL)
  llama.cpp : first token of each window replaced by BOS; only the second half is
              scored (logits at positions 256..510 predict tokens 257..511)
              -> 255 scored tokens per window
  unigram   : train-split token frequencies (documents tokenized without BOS),
              add-one smoothing over the 4096-token vocabulary, on every eval token
              after the initial BOS

Also greedy-decodes 40 tokens from three prompts. Writes MODEL_DIR/eval_results.json.
"""
import json
import math
import os
import sys
import time
from collections import Counter

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import load_model  # noqa: E402
from train_tokenizer import BPETokenizer  # noqa: E402

PROMPTS = ["The jury said", "In the morning", "The President of the United States"]
CTX = 512


@torch.no_grad()
def perplexities(model, ids, bos):
    n = len(ids) // CTX
    nll_a, cnt_a, nll_b, cnt_b = 0.0, 0, 0.0, 0
    for i in range(n):
        w = torch.tensor(ids[i * CTX:(i + 1) * CTX], dtype=torch.long)
        logp = F.log_softmax(model(w[None])[0].float(), dim=-1)
        tgt = w[1:]
        nll = -logp[:-1].gather(1, tgt[:, None])[:, 0]
        nll_a += nll.sum().item()
        cnt_a += nll.numel()
        wb = w.clone()
        wb[0] = bos
        logp = F.log_softmax(model(wb[None])[0].float(), dim=-1)
        first = CTX // 2
        nll = -logp[first:CTX - 1].gather(1, wb[first + 1:, None])[:, 0]
        nll_b += nll.sum().item()
        cnt_b += nll.numel()
    return {"windows": n, "ctx": CTX,
            "gptq": {"ppl": math.exp(nll_a / cnt_a), "mean_nll": nll_a / cnt_a, "scored_tokens": cnt_a},
            "llama.cpp": {"ppl": math.exp(nll_b / cnt_b), "mean_nll": nll_b / cnt_b, "scored_tokens": cnt_b}}


@torch.no_grad()
def greedy(model, tok, prompt, n=40):
    ids = tok.encode(prompt, add_bos=True)
    p = len(ids)
    for _ in range(n):
        logits = model(torch.tensor(ids[-CTX:])[None])[0, -1]
        ids.append(int(torch.argmax(logits)))
    return {"prompt": prompt, "prompt_ids": ids[:p], "generated_ids": ids[p:],
            "text": prompt + tok.decode(ids[p:], skip_special=False)}


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: evaluate.py MODEL_DIR TRAIN_TXT [EVAL_TXT]")
    model_dir, train_txt = sys.argv[1], sys.argv[2]
    eval_txt = sys.argv[3] if len(sys.argv) == 4 else os.path.join(model_dir, "data", "eval.txt")
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    tok = BPETokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    model = load_model(model_dir)
    with open(eval_txt, encoding="utf-8") as f:
        text = f.read()
    ids = tok.encode(text, add_bos=True)
    t0 = time.time()
    res = {"eval_file": os.path.basename(eval_txt), "eval_bytes": len(text.encode("utf-8")),
           "eval_tokens_incl_bos": len(ids)}
    res.update(perplexities(model, ids, tok.bos_id))

    with open(train_txt, encoding="utf-8") as f:
        docs = f.read().rstrip("\n").split("\n\n")
    counts = Counter()
    for d in docs:
        counts.update(tok.encode(d, add_bos=False))
    N, V = sum(counts.values()), len(tok.vocab)
    nll = -sum(math.log((counts[t] + 1) / (N + V)) for t in ids[1:])
    res["unigram"] = {"ppl": math.exp(nll / (len(ids) - 1)), "scored_tokens": len(ids) - 1,
                      "train_tokens_counted": N, "vocab": V}
    res["greedy"] = [greedy(model, tok, p) for p in PROMPTS]
    res["eval_seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(model_dir, "eval_results.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"eval tokens {len(ids)} (incl. BOS), {res['windows']} windows of {CTX}")
    for k in ("gptq", "llama.cpp"):
        print(f"{k:10s} ppl {res[k]['ppl']:.3f} over {res[k]['scored_tokens']} tokens")
    print(f"unigram    ppl {res['unigram']['ppl']:.3f} over {res['unigram']['scored_tokens']} tokens")
    for g in res["greedy"]:
        print("greedy:", repr(g["text"]))


if __name__ == "__main__":
    main()
