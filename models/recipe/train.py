#!/usr/bin/env python3
"""Train the tiny Llama (plain PyTorch, HF Llama semantics and parameter names).

    python3 train.py DATA_DIR MODEL_DIR [--steps N] [--layers 4] [--batch 8] [--seq 512]

DATA_DIR holds train.txt (from prepare_corpus.py); MODEL_DIR holds tokenizer.json
(from train_tokenizer.py) and receives config.json, generation_config.json,
model.safetensors (BF16) and train_log.txt.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_tokenizer import BPETokenizer  # noqa: E402


def make_config(layers):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "num_hidden_layers": layers,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-5,
        "vocab_size": 4096,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }


# ------------------------------------------------------------------ model
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rope_cos_sin(seq, head_dim, theta, device=None):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    t = torch.arange(seq, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device), emb.sin().to(device)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        d = c["hidden_size"]
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv  # GQA: query head h uses kv head h // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        att = att.masked_fill(mask, float("-inf"))
        att = torch.softmax(att.float(), dim=-1).to(q.dtype)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        cos, sin = rope_cos_sin(c["max_position_embeddings"], c["head_dim"], c["rope_theta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def init_weights(self, seed):
        g = torch.Generator().manual_seed(seed)
        std = self.c["initializer_range"]
        out_std = std / math.sqrt(2 * self.c["num_hidden_layers"])
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                nn.init.ones_(p)
            else:
                s = out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=g) * s)

    def forward(self, ids):
        B, T = ids.shape
        x = self.model.embed_tokens(ids)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))


# ------------------------------------------------------------------ safetensors (BF16)
def f32_to_bf16_bits(a):
    """Round-to-nearest-even f32 -> bf16, returned as uint16 bits."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def save_safetensors_bf16(state, path):
    header, blobs, off = {}, [], 0
    for name, t in state.items():
        bits = f32_to_bf16_bits(t.detach().cpu().numpy())
        raw = bits.astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    """Minimal reader (BF16/F32) -> dict of f32 torch tensors."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        if h["dtype"] == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(data[a:b], dtype="<u2"))
        elif h["dtype"] == "F32":
            arr = np.frombuffer(data[a:b], dtype="<f4").copy()
        else:
            raise ValueError(h["dtype"])
        out[name] = torch.from_numpy(arr.reshape(h["shape"]).copy())
    return out


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    m = LlamaForCausalLM(c)
    m.load_state_dict(load_safetensors(os.path.join(model_dir, "model.safetensors")))
    m.eval()
    return m


# ------------------------------------------------------------------ data
def token_stream(tok, path):
    with open(path, encoding="utf-8") as f:
        docs = f.read().rstrip("\n").split("\n\n")
    ids = []
    for d in docs:
        ids.extend(tok.encode(d, add_bos=True))  # <|endoftext|> before every document
    return torch.tensor(ids, dtype=torch.long)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("model_dir")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps, save nothing")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    tok = BPETokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    t0 = time.time()
    stream = token_stream(tok, os.path.join(args.data_dir, "train.txt"))
    print(f"train tokens (incl. one BOS per document): {len(stream)}  [{time.time()-t0:.1f}s]", flush=True)

    c = make_config(args.layers)
    model = LlamaForCausalLM(c)
    model.init_weights(args.seed)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"parameters: {nparams}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    g = torch.Generator().manual_seed(args.seed)
    B, T = args.batch, args.seq
    bos = tok.bos_id
    total = args.bench or args.steps
    log_path = os.path.join(args.model_dir, "train_log.txt") if not args.bench else os.devnull
    logf = open(log_path, "w")
    logf.write(f"# step lr loss tokens_seen elapsed_s  (params={nparams} batch={B}x{T})\n")
    t_start = time.time()
    ema = None
    model.train()
    for step in range(total):
        starts = torch.randint(0, len(stream) - T - 1, (B,), generator=g)
        w = torch.stack([stream[s:s + T + 1] for s in starts.tolist()])
        # half of the windows start with <|endoftext|> (BOS) like a fresh context,
        # the other half are plain slices of the stream
        use_bos = torch.rand(B, generator=g) < 0.5
        w[use_bos, 0] = bos
        x, y = w[:, :-1], w[:, 1:]
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        el = time.time() - t_start
        if step % 10 == 0 or step == total - 1:
            logf.write(f"{step} {lr_at(step):.6f} {lv:.4f} {(step+1)*B*T} {el:.1f}\n")
            logf.flush()
        if step % 50 == 0 or step == total - 1:
            print(f"step {step} lr {lr_at(step):.2e} loss {lv:.4f} ema {ema:.4f} gnorm {gn:.2f} "
                  f"tok/s {(step+1)*B*T/el:.0f} elapsed {el:.0f}s", flush=True)
    el = time.time() - t_start
    print(f"done: {total} steps, {total*B*T} tokens, {el:.0f}s, final loss {lv:.4f} ema {ema:.4f}", flush=True)
    logf.close()
    if args.bench:
        return
    with open(os.path.join(args.model_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    with open(os.path.join(args.model_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, "do_sample": False,
                   "max_length": 512}, f, indent=2)
    save_safetensors_bf16({k: v for k, v in model.state_dict().items()}, os.path.join(args.model_dir, "model.safetensors"))
    with open(os.path.join(args.model_dir, "train_summary.json"), "w") as f:
        json.dump({"steps": total, "batch": B, "seq": T, "tokens_seen": total * B * T, "wall_s": round(el, 1),
                   "final_loss": round(lv, 4), "final_loss_ema": round(ema, 4), "params": nparams,
                   "train_stream_tokens": len(stream), "lr": args.lr, "warmup": args.warmup,
                   "min_lr_frac": args.min_lr_frac, "weight_decay": args.wd, "seed": args.seed,
                   "layers": args.layers}, f, indent=1)


if __name__ == "__main__":
    main()
