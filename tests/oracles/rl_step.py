# The loss and gradient of one online RL optimizer step, computed independently of AlignHub (Debian's python3-torch,
# no AlignHub code): a GPT-2 forward written from Hugging Face's layout (Conv1D weights stored [in, out], tied LM
# head, GELU tanh), the step's rollouts given, and each method's whole-batch step as TRL's GRPOTrainer / RLOOTrainer
# and verl's core_algos describe it, in float64.
#
# stdin: {"model": {n_embd, n_layer, n_head, eps}, "policy": path, "reference": path|null, "teacher": path|null,
#         "value_head": {"weight": [[...]], "bias": [...]}|null, "method": name, "config": {...}, "pad_id": int,
#         "k": K, "micro_batches": M, "rollouts": [{"prompt": [...], "completion": [...], "finish": str}],
#         "rewards": [...], "greedy_rewards": [...]|null}
# stdout: {"loss": float, "grads": {parameter name: flat list (HF layout)}}; a list of requests gets a list of answers.
import json, math, struct, sys
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        assert spec["dtype"] == "F32", spec["dtype"]
        a, b = spec["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=torch.float32).reshape(spec["shape"])
        out[name] = t.to(torch.float64)
    return out


def gpt2(W, ids, cfg):
    """Hidden states [B, T, d] and logits [B, T, V] of a right-padded batch (plain causal attention)."""
    B, T = ids.shape
    d, H, eps = cfg["n_embd"], cfg["n_head"], cfg["eps"]
    hd = d // H
    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][torch.arange(T)].unsqueeze(0)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = F.layer_norm(x, (d,), W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = [t.view(B, T, H, hd).transpose(1, 2) for t in qkv.split(d, dim=-1)]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = x + y @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (d,), W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        m = F.gelu(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (d,), W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    return x, x @ W["transformer.wte.weight"].t()


def token_logps(logits, ids, temperature):
    logp = (logits[:, :-1] / temperature).log_softmax(-1)
    return logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def whiten(x, mask):
    # verl / TRL masked_whiten: (x - mean) * rsqrt(var + 1e-8), unbiased variance.
    n = mask.sum()
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / (n - 1)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def last_token_rewards(rewards, mask):
    out = torch.zeros_like(mask)
    for i in range(mask.shape[0]):
        idx = mask[i].nonzero()
        if len(idx):
            out[i, idx[-1, 0]] = rewards[i]
    return out


def step(req):
    cfg, c = req["model"], req["config"]
    k, M = req["k"], req["micro_batches"]
    W = read_safetensors(req["policy"])
    for t in W.values():
        t.requires_grad_(True)
    rollouts = req["rollouts"]
    N = len(rollouts)
    T = max(len(r["prompt"]) + len(r["completion"]) for r in rollouts)
    ids = torch.full((N, T), req["pad_id"], dtype=torch.long)
    mask = torch.zeros(N, T - 1)
    for i, r in enumerate(rollouts):
        seq = r["prompt"] + r["completion"]
        ids[i, :len(seq)] = torch.tensor(seq)
        if not (c.get("mask_truncated_completions") and r["finish"] == "length"):
            for j in range(len(r["completion"])):
                mask[i, len(r["prompt"]) - 1 + j] = 1
    rewards = torch.tensor(req["rewards"])
    temperature = c["temperature"]
    beta = c["beta"]
    eps_low = c["epsilon"]
    eps_high = c["epsilon_high"] if c.get("epsilon_high") is not None else eps_low
    method = req["method"]
    loss_type = c.get("loss_type", "dapo")

    hidden, logits = gpt2(W, ids, cfg)
    logps = token_logps(logits, ids, temperature)
    old = logps.detach()  # the step's first update: pi_old is the policy at sampling time
    ref = None
    if req.get("reference"):
        with torch.no_grad():
            ref = token_logps(gpt2(read_safetensors(req["reference"]), ids, cfg)[1], ids, temperature)

    def k3(lp):
        lr = ref - lp
        return torch.exp(lr) - lr - 1

    def aggregate(per_token):
        m = mask
        if loss_type == "grpo":
            return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
        if loss_type in ("dapo", "cispo"):
            return (per_token * m).sum() / m.sum()
        if loss_type == "dr_grpo":
            return (per_token * m).sum() / (N * c["max_completion_length"])
        if loss_type == "bnpo":
            # TRL's local batch: each micro-batch's own token mean, then / the number of micro-batches.
            size = -(-N // M)
            parts = [(per_token[a:a + size] * m[a:a + size]).sum() / m[a:a + size].sum().clamp(min=1) for a in range(0, N, size)]
            return sum(parts) / len(parts)
        raise ValueError(loss_type)

    def clipped(adv, level="token", kl_beta=0.0):
        a = adv.unsqueeze(1) if adv.dim() == 1 else adv
        log_ratio = logps - old
        if level == "sequence":
            log_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1)).unsqueeze(-1)
        ratio = torch.exp(log_ratio)
        if loss_type == "cispo":
            per_token = -torch.clamp(ratio, max=eps_high).detach() * a * logps
        else:
            per_token = -torch.min(ratio * a, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a)
        if kl_beta != 0:
            per_token = per_token + kl_beta * k3(logps)
        return aggregate(per_token * torch.ones_like(mask))

    seq_kl = lambda: ((old - ref) * mask).sum(-1) if ref is not None else torch.zeros(N)
    tok_kl = lambda: (old - ref) * mask if ref is not None else torch.zeros_like(mask)

    if method in ("grpo", "reinforcement"):
        g = rewards.view(-1, k)
        centred = (g - g.mean(1, keepdim=True)).view(-1)
        scale = c["scale_rewards"]
        if scale == "group":
            adv = centred / (g.std(1).repeat_interleave(k) + 1e-4)
        elif scale == "batch":
            adv = centred / (rewards.std() + 1e-4)
        else:
            adv = centred
        loss = clipped(adv, c.get("importance_sampling_level", "token"), beta)
    elif method == "rloo":
        R = (rewards - beta * seq_kl()).view(-1, k)
        adv = (R - (R.sum(1, keepdim=True) - R) / (k - 1)).view(-1)
        seq, seq_old = (logps * mask).sum(-1), (old * mask).sum(-1)
        ratio = torch.exp(seq - seq_old)
        loss = (-torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)).mean()
    elif method == "reinforce_pp":
        tr = -beta * tok_kl() + last_token_rewards(rewards, mask)
        returns = tr.flip(1).cumsum(1).flip(1) * mask
        loss = clipped(whiten(returns, mask))
    elif method == "remax":
        greedy = torch.tensor(req["greedy_rewards"]).repeat_interleave(k)
        loss = clipped(rewards - greedy, kl_beta=beta)
    elif method == "rebel":
        # REBEL (Gao et al., 2024): regress (1/eta) x the pair's log-ratio difference onto its reward difference.
        log_ratio = ((logps - old) * mask).sum(-1).view(-1, 2)
        r = rewards.view(-1, 2)
        loss = (((log_ratio[:, 0] - log_ratio[:, 1]) / c["eta"] - (r[:, 0] - r[:, 1])) ** 2).mean()
    elif method == "sppo":
        # SPPO (Wu et al., 2024): the rewards are win rates within the group; regress each log-ratio onto eta (P - 1/2).
        log_ratio = ((logps - old) * mask).sum(-1)
        loss = ((log_ratio - c["eta"] * (rewards - 0.5)) ** 2).mean()
    elif method == "dno":
        # DNO (Rosset et al., 2024): the rewards are win rates in the group; DPO of the best against the worst,
        # the round's sampling policy (pi_old) as the reference, raw logits, mean over groups that have a pair.
        lp = token_logps(logits, ids, 1.0)
        h = ((lp - lp.detach()) * mask).sum(-1).view(-1, k)
        g = rewards.view(-1, k)
        terms = []
        for i in range(g.shape[0]):
            best, worst = int(torch.argmax(g[i])), int(torch.argmin(g[i]))
            gap = float(g[i, best] - g[i, worst])
            if gap > 0 and gap >= c.get("min_win_rate_gap", 0):
                terms.append(-torch.nn.functional.logsigmoid(beta * (h[i, best] - h[i, worst])))
        loss = torch.stack(terms).mean()
    elif method == "online_ipo":
        # Online IPO (Calandriello et al., 2024): (h - (P(y > y') - 1/2) / beta)^2 per pair, h the log-ratio margin to the reference, raw logits.
        lp = token_logps(logits, ids, 1.0)
        with torch.no_grad():
            ref_raw = token_logps(gpt2(read_safetensors(req["reference"]), ids, cfg)[1], ids, 1.0)
        h = ((lp - ref_raw) * mask).sum(-1).view(-1, 2)
        r = rewards.view(-1, 2)
        loss = ((h[:, 0] - h[:, 1] - (r[:, 0] - 0.5) / beta) ** 2).mean()
    elif method == "p3o":
        # P3O (Wu et al., 2023), joint clipping: rho = pi(y)pi_old(y') / (pi_old(y)pi(y')), D the KL-shaped reward difference.
        R = (rewards - beta * seq_kl()).view(-1, 2)
        D = R[:, 0] - R[:, 1]
        lr = ((logps - old) * mask).sum(-1).view(-1, 2)
        rho = torch.exp(lr[:, 0] - lr[:, 1])
        loss = (-0.5 * torch.min(rho * D, torch.clamp(rho, 1 - eps_low, 1 + eps_high) * D)).mean()
    elif method in ("ppo", "rto"):
        vh = req["value_head"]
        vw, vb = torch.tensor(vh["weight"]).requires_grad_(True), torch.tensor(vh["bias"]).requires_grad_(True)
        values = (hidden[:, :-1] @ vw.t() + vb).squeeze(-1) * mask
        old_values = values.detach()
        tr = (-beta * tok_kl() + last_token_rewards(rewards, mask)) * mask
        if method == "rto":
            # RTO (Zhong et al., 2024): the DPO model's log-ratio to the reference on every sampled token.
            with torch.no_grad():
                dpo = token_logps(gpt2(read_safetensors(req["teacher"]), ids, cfg)[1], ids, 1.0)
            tr = tr + c["dpo_beta"] * (dpo - ref) * mask
        # GAE (Schulman et al., 2016), V past the last token 0.
        adv = torch.zeros_like(tr)
        running = torch.zeros(N)
        for t in reversed(range(tr.shape[1])):
            v_next = old_values[:, t + 1] if t + 1 < tr.shape[1] else torch.zeros(N)
            delta = tr[:, t] + c["gamma"] * v_next - old_values[:, t]
            running = (delta + c["gamma"] * c["lam"] * running) * mask[:, t]
            adv[:, t] = running
        returns = (adv + old_values) * mask
        if c["whiten_advantages"]:
            adv = whiten(adv, mask)
        pg = clipped(adv)
        v_clipped = old_values + (values - old_values).clamp(-c["cliprange_value"], c["cliprange_value"])
        vf = 0.5 * (torch.max((values - returns) ** 2, (v_clipped - returns) ** 2) * mask).sum() / mask.sum()
        loss = pg + c["vf_coef"] * vf
        W["value_head.weight"], W["value_head.bias"] = vw, vb
    elif method == "distill":
        with torch.no_grad():
            teacher = token_logps(gpt2(read_safetensors(req["teacher"]), ids, cfg)[1], ids, 1.0)
        loss = clipped((teacher - old) * mask, kl_beta=beta)
    else:
        raise ValueError(method)

    loss.backward()
    grads = {name: (t.grad if t.grad is not None else torch.zeros_like(t)).reshape(-1).tolist() for name, t in W.items()}
    return {"loss": loss.item(), "grads": grads}


request = json.load(sys.stdin)
json.dump([step(r) for r in request] if isinstance(request, list) else step(request), sys.stdout)
