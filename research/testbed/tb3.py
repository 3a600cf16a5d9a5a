"""Testbed 3 runner (research prototype, issue 10): perception pre-training, then vanilla SFT or SCALe-SFT, then
greedy evaluation. Plain PyTorch loop (no TRL) around the project's tiny Qwen2-VL (scalevlm.modeling.tiny) and
SCALe loss (scalevlm.core.scale_loss); fresh samples every step from a per-seed RNG, so both arms of a seed see
the same data in the same order.

  python tb3.py pretrain --seed 0 --steps 800 --save ck/pre_s0
  python tb3.py sft --seed 0 --init ck/pre_s0 --loss vanilla
  python tb3.py sft --seed 0 --init ck/pre_s0 --loss scale --w_start 0.8 --w_end 0.2
One JSON line per run to --results.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tb3_task import LETTERS, make_rows, make_sample, tokenizer_texts  # noqa: E402

from scalevlm.core.scale_loss import scale_loss, schedule_weights, shifted_token_ce  # noqa: E402
from scalevlm.modeling.tiny import TinySpec, build_processor, tiny_config, train_tokenizer  # noqa: E402

THINK, ANSWER = 1, 2
# every held-out generation of the run, written to gens/<tag>_<loss>_s<seed>.jsonl  # scalevlm.core.segments labels
GENS: list[dict] = []


def build(a: argparse.Namespace):
    kw = dict(seed=a.seed, vocab_size=512, hidden_size=a.hidden, num_layers=a.layers, num_heads=4, num_kv_heads=2,
              intermediate_size=2 * a.hidden, vision_embed_dim=128, vision_depth=2, vision_heads=4,
              vision_mlp_ratio=2, patch_size=8, merge_size=2, min_pixels=256, max_pixels=4096,
              max_position_embeddings=2048, rope_theta=10000.0)
    # TinySpec's fields change under us (shared tree: min_pixels became a derived property); pass what it has
    spec = TinySpec(**{k: v for k, v in kw.items() if k in {f.name for f in dataclasses.fields(TinySpec)}})
    tok = train_tokenizer(tokenizer_texts(), spec.vocab_size)  # deterministic: same vocabulary in every phase
    proc = build_processor(tok, spec)
    torch.manual_seed(a.seed)
    from transformers import Qwen2VLForConditionalGeneration
    model = Qwen2VLForConditionalGeneration(tiny_config(spec, tok))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = None
    return model, proc, tok


def msgs(q: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]


def collate(proc, tok, rows: list[dict]) -> dict:
    """Right-padded batch; segments[b, t] = THINK/ANSWER for supervised completion tokens (through <|im_end|>):
    think = first completion token through </think>, answer = after it (project convention, core.segments)."""
    prompts = [proc.apply_chat_template(msgs(r["q"]), tokenize=False, add_generation_prompt=True) for r in rows]
    texts = [p + r["comp"] + "<|im_end|>" for p, r in zip(prompts, rows)]
    enc = proc(text=texts, images=[[r["image"]] for r in rows], padding=True, return_tensors="pt")
    plen = [len(x) for x in proc(text=prompts, images=[[r["image"]] for r in rows])["input_ids"]]
    ids = enc["input_ids"]
    seg = torch.zeros_like(ids)
    close = tok.convert_tokens_to_ids("</think>")
    eos = tok.eos_token_id
    for b in range(ids.size(0)):
        row = ids[b].tolist()
        end = len(row) - 1 - row[::-1].index(eos)
        seg[b, plen[b]:end + 1] = THINK
        if close in row[plen[b]:]:
            c = row.index(close, plen[b])
            seg[b, c + 1:end + 1] = ANSWER
    enc["segments"] = seg
    return enc


def forward_ce(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    seg = batch["segments"]
    labels = torch.where(seg > 0, batch["input_ids"], torch.full_like(seg, -100))
    out = model(**{k: v for k, v in batch.items() if k != "segments"}, use_cache=False)
    return shifted_token_ce(out.logits, labels), seg[:, 1:]


@torch.no_grad()
def teacher_forced(model, proc, tok, rows: list[dict], bs: int = 25) -> dict:
    """Held-out CE per segment, and CE of the answer VALUE token (the letter after <answer>)."""
    model.eval()
    a_open = tok.convert_tokens_to_ids("<answer>")
    s = Counter()
    for i in range(0, len(rows), bs):
        batch = collate(proc, tok, rows[i:i + bs])
        ce, seg = forward_ce(model, batch)
        tgt = batch["input_ids"][:, 1:]
        val = torch.zeros_like(seg, dtype=torch.bool)
        val[:, 1:] = tgt[:, :-1] == a_open
        for name, m in (("think", seg == THINK), ("answer", seg == ANSWER), ("ansval", val)):
            s[name] += float((ce * m).sum())
            s[name + "_n"] += int(m.sum())
    return {f"ce_{k}": round(s[k] / max(1, s[k + "_n"]), 4) for k in ("think", "answer", "ansval")} | {
        "think_tokens_mean": s["think_n"] / len(rows), "answer_tokens_mean": s["answer_n"] / len(rows)}


TOTAL = re.compile(r"total is (\d+)")  # the think's conclusion (v3: the first occurrence; v1/v2: the last)
ROWCAP = re.compile(r"row (\d): ((?:red|blue|white)(?: (?:red|blue|white))*) \((\d+) red")


@torch.no_grad()
def evaluate(model, proc, tok, rows: list[dict], kind: str, max_new_tokens: int, bs: int = 50) -> dict:
    import tb3_task
    a_trace = tb3_task.TRACE
    model.eval()
    a_open, t_close = tok.convert_tokens_to_ids("<answer>"), tok.convert_tokens_to_ids("</think>")
    st = Counter()
    samples, think_lens = [], []
    for i in range(0, len(rows), bs):
        chunk = rows[i:i + bs]
        prompts = [proc.apply_chat_template(msgs(r["q"]), tokenize=False, add_generation_prompt=True) for r in chunk]
        inp = proc(text=prompts, images=[[r["image"]] for r in chunk], padding=True, padding_side="left",
                   return_tensors="pt")
        out = model.generate(**inp, max_new_tokens=max_new_tokens, do_sample=False)
        for r, g in zip(chunk, out[:, inp["input_ids"].shape[1]:]):
            gl = [t for t in g.tolist() if t != tok.pad_token_id]
            txt = tok.decode(gl, skip_special_tokens=True)
            if len(samples) < 2:
                samples.append(txt)
            GENS.append({"i": len(GENS), "total": r["total"], "answer": r.get("answer"), "grid": r["grid"], "gen": txt})
            cap = {int(m[0]): (m[1].split(), int(m[2])) for m in ROWCAP.findall(txt)}
            st["caption_exact"] += all(cap.get(k + 1, (None,))[0] == r["grid"][k] for k in range(4))
            st["cell_ok"] += sum(a == b for k in range(4) for a, b in zip(cap.get(k + 1, ([],))[0], r["grid"][k]))
            if kind == "caption":
                continue
            st["missing_answer"] += a_open not in gl
            if t_close in gl:
                think_lens.append(gl.index(t_close))
            think = txt.split("</think>")[0]
            tot = TOTAL.findall(think)
            think_total = int(tot[0] if a_trace == "early" else tot[-1]) if tot else None
            think_ok = think_total == r["total"]
            m = re.search(r"<answer>(.*?)</answer>", txt)
            pred = m.group(1).strip() if m else None
            ok = pred == r["answer"]
            if "options" in r:
                think_letter = LETTERS[r["options"].index(think_total)] if think_total in r["options"] else None
            else:  # notred: consistent = the answer is 16 minus the count the think restates at its end
                rs = re.findall(r"So (\d+) of the 16", think)
                think_letter = str(16 - int(rs[-1])) if rs else None
                st["restate_ok"] += bool(rs) and int(rs[-1]) == r["total"]
            st["think_correct"] += think_ok
            st["acc"] += ok
            st["acc_and_think"] += ok and think_ok
            st["consistent"] += pred is not None and pred == think_letter
            st["fmt"] += m is not None and "</think>" in txt
    n = len(rows)
    res = {"n_eval": n, "caption_exact": st["caption_exact"] / n, "cell_acc": st["cell_ok"] / (16 * n),
           "samples": samples}
    if kind != "caption":
        res |= {k: st[k] / n for k in ("acc", "think_correct", "consistent", "fmt", "missing_answer", "restate_ok")}
        res["p_ans_given_think"] = st["acc_and_think"] / max(1, st["think_correct"])
        res["gen_think_len"] = sum(think_lens) / max(1, len(think_lens))
        res["max_new_tokens"] = max_new_tokens
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["pretrain", "sft"])
    ap.add_argument("--loss", default="vanilla", choices=["vanilla", "scale"])
    ap.add_argument("--w_start", type=float, default=0.8)
    ap.add_argument("--w_end", type=float, default=0.2)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--min_refl", type=int, default=2)
    ap.add_argument("--max_refl", type=int, default=9)
    ap.add_argument("--init", default=None)
    ap.add_argument("--save", default=None)
    ap.add_argument("--n_test", type=int, default=200)
    ap.add_argument("--max_new_tokens", type=int, default=512)
    ap.add_argument("--stop_exact", type=float, default=0.0, help="pretrain: stop once held-out caption exact >= this")
    ap.add_argument("--tag", default="")
    ap.add_argument("--freeze_vision", action="store_true", help="sft: keep the vision tower + merger fixed")
    ap.add_argument("--v1_caption", action="store_true", help="caption without running totals (run 1)")
    ap.add_argument("--trace", default="early", choices=["early", "copy"], help="early = v3 trace, copy = v1/v2 trace")
    ap.add_argument("--v3_fluff", action="store_true", help="v3 self-check sentences (default: v4)")
    ap.add_argument("--replay", type=int, default=0,
                    help="sft: caption samples per step, plain CE with weight 1, both arms")
    ap.add_argument("--answer", default="letter", choices=["letter", "notred"])
    ap.add_argument("--v6", action="store_true", help="self-checks without digits")
    ap.add_argument("--chain", action="store_true", help="v6b: 'So the total is still N.' after each self-check")
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.jsonl"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    import tb3_task
    tb3_task.RUNNING = not a.v1_caption
    tb3_task.TRACE = a.trace
    tb3_task.V4 = not a.v3_fluff
    tb3_task.ANSWER = a.answer
    tb3_task.V6, tb3_task.CHAIN = a.v6, a.chain
    rep_rng = random.Random(3000 + a.seed)  # replay captions: their own image stream
    t0 = time.time()
    model, proc, tok = build(a)
    if a.init:
        model.load_state_dict(torch.load(os.path.join(a.init, "model.pt"), map_location="cpu"))
    kind = "caption" if a.phase == "pretrain" else "reason"
    kw = {} if kind == "caption" else {"min_refl": a.min_refl, "max_refl": a.max_refl}
    test = make_rows(kind, a.n_test, 999999, **kw)  # held-out images; training RNGs below use other seeds
    rng = random.Random((2000 if kind == "caption" else 1000) + a.seed)  # pretrain and SFT images disjoint streams
    if a.freeze_vision:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.0,
                            betas=(0.9, 0.98))
    warm = max(1, int(a.warmup * a.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / a.steps))))
    hist, t1, step = [], time.time(), 0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"build {t1 - t0:.1f}s params {n_params}", flush=True)
    for step in range(a.steps):
        model.train()
        batch = collate(proc, tok, [make_sample(rng, kind, **kw) for _ in range(a.bs)])
        ce, seg = forward_ce(model, batch)
        wt, wa = schedule_weights("cosine", step / a.steps, a.w_start, a.w_end)
        loss, stats = scale_loss(ce, seg, wt, wa, normalisation="per_sample" if a.loss == "scale" else "vanilla")
        if a.replay and kind != "caption":  # same fixed-weight perception replay term in both arms
            rce, rseg = forward_ce(model, collate(proc, tok,
                                                  [make_sample(rep_rng, "caption") for _ in range(a.replay)]))
            loss = loss + (rce * (rseg > 0)).sum() / (rseg > 0).sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == a.steps - 1:
            h = {"step": step, "loss": round(loss.item(), 4), "l_think": round(stats.loss_think, 4),
                 "l_ans": round(stats.loss_answer, 4), "w_think": round(wt, 3), "t": round(time.time() - t1, 1)}
            hist.append(h)
            print(h, flush=True)
        if kind == "caption" and a.stop_exact and step % 100 == 99:
            ev = evaluate(model, proc, tok, test[:100], "caption", 80)
            print(f"step {step} caption exact {ev['caption_exact']:.3f} cell {ev['cell_acc']:.4f}", flush=True)
            if ev["caption_exact"] >= a.stop_exact:
                break
    train_s = time.time() - t1
    t2 = time.time()
    tf = teacher_forced(model, proc, tok, test) if kind != "caption" else {}
    ev = evaluate(model, proc, tok, test, kind, 80 if kind == "caption" else a.max_new_tokens)
    res = {k: v for k, v in vars(a).items() if k != "results"} | {
        "steps_done": step + 1, "train_s": round(train_s, 1), "eval_s": round(time.time() - t2, 1), "params": n_params,
        **tf, **ev, "history": hist}
    if kind != "caption":  # chance: always the most frequent letter / the answer prior
        res["chance_letter"] = max(Counter(r["answer"] for r in test).values()) / len(test)
    print("RESULT", json.dumps({k: v for k, v in res.items() if k != "history"}), flush=True)
    with open(a.results, "a") as f:
        f.write(json.dumps(res) + "\n")
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gens"), exist_ok=True)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gens", f"{a.tag}_{a.loss}_s{a.seed}.jsonl"),
              "w") as f:
        f.writelines(json.dumps(g) + "\n" for g in GENS)
    if a.save:
        os.makedirs(a.save, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(a.save, "model.pt"))


if __name__ == "__main__":
    main()
