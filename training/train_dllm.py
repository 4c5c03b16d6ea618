"""Train ``mdlm-small``: a masked-diffusion LM (LLaDA objective) on arithmetic + Python source.

Objective (LLaDA, Nie et al., arXiv 2502.09992, supervised form): for each sequence draw a
mask ratio t ~ U(0, 1), replace every answer token by [MASK] with probability t, and minimise
the cross-entropy on the masked tokens. LLaDA weights each sequence's masked-token loss by 1/t
(the ELBO); at this scale that weighting's gradient variance kept the model from learning even a
copy task (loss ~3 after 2,100 steps), so the loss here is the plain mean over masked tokens
(the same minimiser, since both are minimised by the true conditionals of the masked tokens).
Answers are padded with end-of-text tokens to the generation length (96, 128 or 256 tokens),
which are part of the answer, so the model learns where to stop.

Data: GSM8K-style arithmetic word problems (hasten.dllm.data, seed 0; any question of the
held-out evaluation set is skipped) and the Python standard library's top-level .py files
(Python Software Foundation License; held-out files excluded), tokenised with SmolLM2's
tokenizer and restricted to a reduced vocabulary: every token of the arithmetic data plus the
most frequent source tokens; source lines with any other token are dropped. The reduced id ->
SmolLM2 id map ships inside the weights file (tensor ``vocab.smollm2_ids``, -1 for [MASK]).

Run from the repository root (the shipped weights were made by exactly this command):

    python training/train_dllm.py --minutes 36 --threads 2 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hasten.dllm import data  # noqa: E402
from hasten.dllm.models.mdlm import MaskedDiffusionLM, MDLMConfig  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "hasten" / "dllm" / "models" / "weights"
NAME = "mdlm-small"
MASK, EOS = 0, 1  # reduced ids


def build_vocab(tok, seed: int, text_vocab: int):
    rng = random.Random(seed)
    heldout = {p.question for p in data.eval_problems(1000)}
    problems = []
    while len(problems) < 40000:
        p = data.arithmetic_problem(rng)
        if p.question not in heldout:
            problems.append(p)
    arith = [(tok(data.prompt_text(p))["input_ids"], tok(p.solution)["input_ids"]) for p in problems]
    arith_tokens = {i for pr, so in arith for i in pr + so}
    train_lines, counts = [], collections.Counter()
    for path in data.stdlib_files():
        if data.is_heldout_file(path):
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
            ids = tok(line)["input_ids"]
            train_lines.append(ids)
            counts.update(ids)
    text_tokens = {i for i, _ in counts.most_common(text_vocab)}
    smol_ids = [-1, tok.eos_token_id] + sorted((arith_tokens | text_tokens) - {tok.eos_token_id})
    to_reduced = {s: r for r, s in enumerate(smol_ids) if s >= 0}
    stream = [to_reduced[i] for ids in train_lines if all(i in to_reduced for i in ids) for i in ids]
    arith = [([to_reduced[i] for i in pr], [to_reduced[i] for i in so]) for pr, so in arith]
    kept = sum(1 for ids in train_lines if all(i in to_reduced for i in ids)) / max(1, len(train_lines))
    return smol_ids, arith, stream, kept


def make_batch(rng: random.Random, arith, stream, gen_len: int, rows: int, text_frac: float):
    prompts, answers = [], []
    while len(prompts) < rows:
        if rng.random() < text_frac:
            start = rng.randrange(len(stream) - 32 - gen_len)
            prompts.append(stream[start : start + 32])
            answers.append(stream[start + 32 : start + 32 + gen_len])
        else:
            pr, so = arith[rng.randrange(len(arith))]
            if len(so) >= gen_len:
                continue
            prompts.append(pr)
            answers.append(so + [EOS] * (gen_len - len(so)))
    plen = max(len(p) for p in prompts)
    ids = torch.tensor([[EOS] * (plen - len(p)) + p + a for p, a in zip(prompts, answers)])
    visible = torch.tensor([[False] * (plen - len(p)) + [True] * (len(p) + gen_len) for p in prompts])
    return ids, visible, plen


def llada_loss(net, ids, visible, plen, gen):
    b, length = ids.shape
    t = torch.rand(b, 1, generator=gen).clamp_min(1e-3)
    answer = torch.zeros_like(visible)
    answer[:, plen:] = True
    masked = answer & (torch.rand(b, length, generator=gen) < t)
    masked[:, plen] |= ~masked.any(dim=1)  # at least one masked token per row
    noisy = torch.where(masked, torch.full_like(ids, MASK), ids)
    logits, _ = net(noisy, key_mask=visible[:, None, None, :])
    ce = F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="none").view(b, length)
    return (ce * masked).sum() / masked.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--tokens-per-step", type=int, default=2048)
    ap.add_argument("--text-vocab", type=int, default=3000)
    ap.add_argument("--text-frac", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    import hasten

    _, tok = hasten.load_model("smollm2-135m")
    smol_ids, arith, stream, kept = build_vocab(tok, args.seed, args.text_vocab)
    print(
        f"vocab {len(smol_ids)}  arithmetic {len(arith)}  text tokens {len(stream)}  lines kept {kept:.2f}  "
        f"prep {time.time() - t0:.0f}s",
        flush=True,
    )
    cfg = MDLMConfig(vocab_size=len(smol_ids))
    net = MaskedDiffusionLM(cfg)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"parameters {n_params}", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng, gen = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    budget, start, step, losses, window = args.minutes * 60, time.time(), 0, [], []
    while (elapsed := time.time() - start) < budget:
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        gen_len = rng.choices([96, 128, 256], weights=[0.5, 0.35, 0.15])[0]
        rows = max(4, args.tokens_per_step // (gen_len + 48))
        ids, visible, plen = make_batch(rng, arith, stream, gen_len, rows, args.text_frac)
        loss = llada_loss(net, ids, visible, plen, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        window.append(loss.item())
        step += 1
        if step % 50 == 0:
            losses.append(round(sum(window) / len(window), 5))
            window = []
            print(f"step {step}  loss {losses[-1]:.4f}  lr {lr:.2e}  {elapsed / 60:.1f} min", flush=True)
    seconds = time.time() - start
    from safetensors.torch import save_file

    from hasten.diffusion.models import write_manifest

    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    tensors["vocab.smollm2_ids"] = torch.tensor(smol_ids, dtype=torch.int32)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / f"{NAME}.safetensors"))
    manifest = {
        "name": NAME,
        "architecture": "MaskedDiffusionLM",
        "config": cfg.to_dict(),
        "parameters": n_params,
        "files": {f"{NAME}.safetensors": {}},
        "data": {
            "name": "GSM8K-style arithmetic (hasten.dllm.data, seed 0, held-out eval set excluded) + "
            "Python standard library top-level .py files (held-out files excluded)",
            "source": f"generated by this repository (Apache-2.0); CPython {platform.python_version()} stdlib",
            "license": f"arithmetic: Apache-2.0 (generated); text: {data.TEXT_LICENSE}",
        },
        "extra": {
            "mask_id": MASK,
            "eos_id": EOS,
            "tokenizer": "smollm2-135m",
            "vocab_size": len(smol_ids),
            "text_lines_kept": round(kept, 4),
        },
        "training": {
            "command": f"python training/train_dllm.py --minutes {args.minutes:g} --threads {args.threads} "
            f"--seed {args.seed} --text-frac {args.text_frac:g} --lr {args.lr:g}",
            "objective": "LLaDA masking: t~U(0,1), mask answer tokens w.p. t, mean CE over masked tokens",
            "seconds": round(seconds, 1),
            "steps": step,
            "seed": args.seed,
            "lr": args.lr,
            "tokens_per_step": args.tokens_per_step,
            "threads": args.threads,
            "loss_per_50_steps": losses,
            "machine": platform.machine(),
            "torch": torch.__version__,
            "stored_dtype": "float16",
        },
    }
    path = write_manifest(manifest, args.out)
    print(json.dumps({"steps": step, "seconds": round(seconds), "manifest": str(path)}), flush=True)


if __name__ == "__main__":
    main()
