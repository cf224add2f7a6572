# Rotary inverse frequencies as transformers' modeling_rope_utils computes them (_compute_default_rope_parameters,
# _compute_linear_scaling_rope_parameters, _compute_dynamic_ntk_parameters, _compute_llama3_parameters), transcribed
# from those functions in plain Python floats: the reference AlignHub's RopeScaling is checked against.
# stdin: [{"head_dim", "theta", "scaling": {...} | null, "max_positions", "seq_len"}]; stdout: [[inv_freq...], ...]
import json, math, sys

def default(dim, base):
    return [1.0 / (base ** (i / dim)) for i in range(0, dim, 2)]

def compute(case):
    dim, base, s = case["head_dim"], case["theta"], case.get("scaling")
    if not s:
        return default(dim, base)
    kind = s.get("rope_type", s.get("type"))
    if kind == "linear":
        return [f / s["factor"] for f in default(dim, base)]
    if kind == "dynamic":
        # seq_len > max_position_embeddings: base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        max_pos, seq_len, factor = case["max_positions"], case["seq_len"], s["factor"]
        if seq_len > max_pos:
            base = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return default(dim, base)
    if kind == "llama3":
        inv = default(dim, base)
        factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        out = []
        for f in inv:
            wavelen = 2 * math.pi / f
            scaled = f / factor if wavelen > low_wavelen else f
            if not (wavelen < high_wavelen) and not (wavelen > low_wavelen):
                smooth = (old / wavelen - low) / (high - low)
                scaled = (1 - smooth) * scaled / factor + smooth * scaled
            out.append(scaled)
        return out
    raise ValueError(kind)

cases = json.load(sys.stdin)
json.dump([compute(c) for c in cases], sys.stdout)
